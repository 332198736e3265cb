"""Phase 1B judge parsing, position swapping, win/loss/tie, the score, the decision tree and failures."""

from __future__ import annotations

import json

import pytest

from cogumi.config_base import ModelConfig
from cogumi.evaluate.failures import failure_records
from cogumi.evaluate.judge import PairwiseJudgeStep, parse_pairwise_verdict
from cogumi.evaluate.scoring import cost_report, decision, outcome, render_markdown, summarise, tally
from cogumi.schema import normalise_record

LOCAL, REF = "local answer text", "reference answer text"


def _rating(n):
    return {"correctness": n, "completeness": n, "clarity": n, "conciseness": n}


def test_parse_verdict_accepts_json_with_fences_and_synonyms():
    text = 'Sure!\n```json\n{"answer_a": {"correctness": 8, "completeness": 7, "clarity": 9, "conciseness": 6},' \
           ' "answer_b": {"accuracy": "5/10", "complete": 5, "coherence": 5, "brevity": 5.0}}\n```'
    v = parse_pairwise_verdict(text)
    assert v["a"] == {"correctness": 8, "completeness": 7, "clarity": 9, "conciseness": 6}
    assert v["b"] == _rating(5)


def test_parse_verdict_reads_prose_with_both_answers():
    text = ("Answer A: correctness 7, completeness 6, clarity 8, conciseness 9.\n"
            "Answer B - correctness: 3, completeness: 4, clarity: 5, conciseness: 2")
    assert parse_pairwise_verdict(text) == {"a": {"correctness": 7, "completeness": 6, "clarity": 8, "conciseness": 9},
                                   "b": {"correctness": 3, "completeness": 4, "clarity": 5, "conciseness": 2}}


@pytest.mark.parametrize("text", [
    "Both answers are fine, I prefer the first one.",
    '{"answer_a": {"correctness": 8}}',
    '{"answer_a": {"correctness": 11, "completeness": 7, "clarity": 9, "conciseness": 6}, '
    '"answer_b": {"correctness": 5, "completeness": 5, "clarity": 5, "conciseness": 5}}',  # out of range
    "",
])
def test_parse_verdict_rejects_incomplete_or_prose_only(text):
    assert parse_pairwise_verdict(text) is None


def _row(p1, p2=None, **extra):
    return {"id": "x", "category": "math", "prompt": "q", "local_answer": LOCAL, "reference_answer": REF,
            "judge_pass1": json.dumps(p1), "judge_pass2": json.dumps(p2) if p2 else None, **extra}


@pytest.mark.parametrize("local, ref, expected", [(8, 7, "win"), (7, 8, "loss"), (7.5, 7, "tie"), (7, 7.5, "tie")])
def test_outcome_uses_the_half_point_margin(local, ref, expected):
    p = {"local": {"correctness": local, "completeness": local, "clarity": local, "conciseness": local},
         "reference": _rating(ref)}
    assert outcome(_row(p, p))["outcome"] == expected


def test_swapped_passes_cancel_a_first_position_preference():
    # pass 1 (local first): local 8 vs ref 6; pass 2 (ref first): local 6 vs ref 8 -> a tie, bias +2
    p1 = {"local": _rating(8), "reference": _rating(6)}
    p2 = {"local": _rating(6), "reference": _rating(8)}
    out = outcome(_row(p1, p2))
    assert out["outcome"] == "tie" and out["first_position_bonus"] == 2.0 and out["passes"] == 2


def test_failed_passes_and_failed_answers_are_errors_with_reasons():
    assert outcome(_row({"error": "judge gave no parsable scores: 'meh'"},
                        {"error": "judge call failed"}))["outcome"] == "error"
    one = outcome(_row({"local": _rating(9), "reference": _rating(5)}, {"error": "judge call failed"}))
    assert one["outcome"] == "win" and one["passes"] == 1 and "judge call failed" in one["reason"]
    out = outcome(_row({"local": _rating(9), "reference": _rating(5)}, reference_error="HTTP 500"))
    assert out["outcome"] == "error" and "HTTP 500" in out["reason"]


def test_score_is_wins_plus_half_ties_over_judged():
    items = [{"outcome": o} for o in ["win"] * 6 + ["tie"] * 2 + ["loss"] * 2 + ["error"]]
    t = tally(items)
    assert t["score"] == pytest.approx(70.0) and t["judged"] == 10 and t["error"] == 1 and t["total"] == 11


@pytest.mark.parametrize("score, verdict", [(95, "skip"), (90, "skip"), (89.9, "optional"), (85, "optional"),
                                            (84.9, "required"), (None, "undecided")])
def test_decision_tree(score, verdict):
    assert decision(score)["phase_1c"] == verdict


def test_judge_step_swaps_positions_and_maps_scores_back(scripted):
    """A judge that always prefers answer A: local wins pass 1, reference wins pass 2 -> tie overall."""
    seen = []

    def reply(messages, params):
        user = messages[-1]["content"]
        seen.append(("ANSWER A:\n" + LOCAL) in user)
        assert params.response_format is not None
        return json.dumps({"answer_a": _rating(9), "answer_b": _rating(4)})

    step = PairwiseJudgeStep(ModelConfig(), swap=True)
    step.caller._backend = scripted(reply)
    row = step.one({"id": "1", "category": "code", "prompt": "q", "local_answer": LOCAL, "reference_answer": REF})
    p1, p2 = json.loads(row["judge_pass1"]), json.loads(row["judge_pass2"])
    assert seen == [True, False]  # local shown first, then the reference
    assert p1["local"] == _rating(9) and p2["local"] == _rating(4)
    assert outcome(row)["outcome"] == "tie" and row["judge_calls"] == 2


def test_judge_step_records_prose_judges_as_errors_after_retries(scripted):
    backend = scripted(lambda m, p: "I think both answers are quite good overall.")
    step = PairwiseJudgeStep(ModelConfig(), parse_attempts=2, swap=True)
    step.caller._backend = backend
    row = step.one({"id": "1", "category": "math", "prompt": "q", "local_answer": LOCAL, "reference_answer": REF})
    assert len(backend.calls) == 4  # two passes x two asks
    out = outcome(row)
    assert out["outcome"] == "error" and "no parsable scores" in out["reason"]


def test_summary_report_cost_and_failures():
    items = [
        {"id": "m1", "category": "math", "prompt": "2+2?", "reference_answer": "4", "outcome": "loss"},
        {"id": "m2", "category": "math", "prompt": "3+3?", "reference_answer": "6", "outcome": "win"},
        {"id": "c1", "category": "code", "prompt": "is_even", "reference_answer": "def f(): ...", "outcome": "tie"},
        {"id": "c2", "category": "code", "prompt": "broken", "reference_answer": None, "outcome": "error"},
    ]
    summary = summarise(items)
    assert summary["categories"]["math"]["score"] == 50.0 and summary["categories"]["code"]["score"] == 50.0
    assert summary["overall"]["score"] == pytest.approx(50.0)
    cost = cost_report({"judge": {"calls": 4, "prompt_tokens": 1_000_000, "completion_tokens": 500_000}},
                       {"judge": (0.15, 0.6, "registry (gpt-4o-mini)")})
    assert cost["total_usd"] == pytest.approx(0.45)
    md = render_markdown(summary, decision(50.0), cost, "compare", baseline={"categories": {"math": {"score": 25.0}},
                                                                             "overall": {"score": 40.0}})
    assert "| math | 1 | 1 | 0 | 0 | 50.0 | 25.0 | +25.0 |" in md and "Phase 1C required" in md
    failures = failure_records(items, "compare")
    assert sorted(failures) == ["code", "math"]
    assert failures["math"] == [{"instruction": "2+2?", "output": "4", "metadata": {
        "domain": "math", "source": "compare:loss", "id": "m1", "local_score": None, "reference_score": None}}]
    rec = normalise_record(failures["code"][0])  # what training reads
    assert rec["instruction"] == "is_even" and rec["response"] == "def f(): ..." and rec["domain"] == "code"
