"""Phase 1C selection rules: verified greedy answers, self-consistency votes, diverse creative outputs."""

from __future__ import annotations

import json

import pytest

from cogumi.config_base import ModelConfig
from cogumi.evaluate.config import DistillConfig
from cogumi.evaluate.distill import DistillStep, answer_key, decide, pick_diverse, verify, vote

SPEC = DistillConfig().categories
RULES = dict(min_agreement=0.6, max_diverse=3, diversity_threshold=0.6, keep_unverified=True, verify_votes=True,
             timeout_s=3.0)
MATH = {"id": "m", "category": "math", "prompt": "Tom has 3 bags of 4 apples. How many apples?", "answer": "12"}
CODE = {"id": "c", "category": "code", "prompt": "is_even", "entry_point": "is_even",
        "tests": "assert is_even(2)\nassert not is_even(3)"}


def test_spec_category_settings_are_the_defaults():
    assert SPEC["math"].keep == "verified" and not SPEC["math"].generate_sample and SPEC["math"].generate_temp == 0
    assert SPEC["reasoning"].keep == "vote" and SPEC["reasoning"].generate_temp == 0.1
    assert SPEC["creative"].keep == "diverse" and SPEC["creative"].generate_temp == 0.7
    assert SPEC["creative"].train_temp == 0.3 and SPEC["instruction"].generate_temp == 0.2


def test_greedy_math_is_kept_only_when_it_matches_the_ground_truth():
    right = decide("math", SPEC["math"], ["3 * 4 = 12 apples. #### 12"], MATH, **RULES)
    wrong = decide("math", SPEC["math"], ["3 + 4 = 7 apples."], MATH, **RULES)
    assert right["kept"] and right["verified"] is True
    assert not wrong["kept"] and wrong["verified"] is False and "wrong answer" in wrong["decision"]
    unknown = decide("math", SPEC["math"], ["It is 12."], {**MATH, "answer": None}, **RULES)
    assert unknown["kept"] and unknown["verified"] is None


def test_code_answers_are_verified_by_running_the_tests():
    good = "```python\ndef is_even(n):\n    return n % 2 == 0\n```"
    bad = "```python\ndef is_even(n):\n    return True\n```"
    assert answer_key("code", good, CODE) == "pass" and answer_key("code", bad, CODE) == "fail"
    assert decide("code", SPEC["code"], [good], CODE, **RULES)["kept"] == [good]
    assert decide("code", SPEC["code"], [bad], CODE, **RULES)["kept"] == []
    looping = "```python\ndef is_even(n):\n    while True: pass\n```"
    assert answer_key("code", looping, CODE, timeout_s=1.0) == "fail"


def test_vote_keeps_the_longest_majority_solution_at_60_percent():
    row = {"id": "r", "category": "reasoning", "prompt": "2, 4, 8, 16, ...?", "answer": "32"}
    texts = ["It doubles, so 32.", "Each term doubles: 16 * 2 = 32.", "32", "The answer is 30.", "so 32"]
    d = decide("reasoning", SPEC["reasoning"], texts, row, **RULES)
    assert d["majority"] == "32" and d["agreement"] == pytest.approx(0.8)
    assert d["kept"] == ["Each term doubles: 16 * 2 = 32."] and d["verified"] is True


def test_vote_below_threshold_or_against_ground_truth_is_dropped():
    row = {"id": "r", "category": "reasoning", "prompt": "?", "answer": "32"}
    split = decide("reasoning", SPEC["reasoning"], ["32", "31", "30", "32", "29"], row, **RULES)
    assert split["kept"] == [] and split["agreement"] == pytest.approx(0.4)
    wrong = decide("reasoning", SPEC["reasoning"], ["30", "30", "30", "32", "30"], row, **RULES)
    assert wrong["kept"] == [] and "contradicts" in wrong["decision"]
    assert vote([None, None]) == (None, 0.0) and vote(["a", "a", None]) == ("a", pytest.approx(2 / 3))


def test_knowledge_answers_match_whole_words():
    row = {"answer": "au"}
    assert verify("knowledge", "The symbol for gold is Au.", None, row)
    assert not verify("knowledge", "Gold's symbol is Ag, from the Latin aurum.", None, row)


def test_diverse_keeps_up_to_three_distinct_outputs():
    texts = ["The sea at night is a sheet of black glass under the moon.",
             "The sea at night is a sheet of black glass under the moon!",
             "Waves whisper secrets to the sleeping harbour lights.",
             "Stars drown slowly in the ink of the tide.",
             "A lighthouse blinks; the dark water answers.", ""]
    kept = pick_diverse(texts, 3, 0.6)
    assert len(kept) == 3 and "" not in kept
    assert sum(t.startswith("The sea at night") for t in kept) == 1


def test_distill_step_samples_n_times_at_the_category_temperature(scripted):
    calls = []

    def reply(messages, params):
        calls.append(params)
        return "the answer is 32" if len(calls) % 4 else "maybe 31"

    step = DistillStep(ModelConfig(), {c: s.model_dump() for c, s in SPEC.items()}, n_samples=5,
                       max_tokens=32, system_prompt=None, code_timeout_s=2.0, seed=7,
                       **{k: v for k, v in RULES.items() if k != "timeout_s"})
    step.caller._backend = scripted(reply)
    out = step.one({"id": "r", "category": "reasoning", "prompt": "2, 4, 8, 16?", "answer": "32"})
    assert len(calls) == 5 and {p.temperature for p in calls} == {0.1} and [p.seed for p in calls] == [7, 8, 9, 10, 11]
    assert out["agreement"] == pytest.approx(0.8) and json.loads(out["kept"]) == ["the answer is 32"]
    calls.clear()
    greedy = step.one(dict(MATH))
    assert len(calls) == 1 and calls[0].temperature == 0.0 and greedy["verified"] is False


def test_distill_step_reports_generation_failures(scripted):
    step = DistillStep(ModelConfig(), {c: s.model_dump() for c, s in SPEC.items()}, n_samples=2,
                       max_tokens=8, system_prompt=None, code_timeout_s=2.0,
                       **{k: v for k, v in RULES.items() if k != "timeout_s"})
    step.caller = type(step.caller)(ModelConfig(), attempts=1, backend=scripted(lambda m, p: TimeoutError("slow")))
    out = step.one(dict(MATH))
    assert out["decision"] == "error" and "slow" in out["error"] and json.loads(out["kept"]) == []
