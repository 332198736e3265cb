"""Code benchmarks: HumanEval and MBPP-style pass@1 with known right and wrong answers."""

from __future__ import annotations

import pytest

from cogumi.errors import CogumiError
from cogumi.evaluate.codebench import (
    build_program,
    chat_prompt,
    load_humaneval,
    load_mbpp,
    reference_completion,
    run_suite,
    score,
)


@pytest.fixture(scope="module")
def humaneval():
    return load_humaneval(4)


def test_humaneval_ships_all_164_problems():
    assert len(load_humaneval()) == 164


def test_canonical_solutions_pass_and_wrong_ones_fail(humaneval):
    for p in humaneval:
        assert score(p, p.reference, style="completion")["passed"], p.task_id  # body continuation
        assert score(p, reference_completion(p))["passed"], p.task_id  # whole function in a chat answer
        wrong = score(p, "```python\ndef " + p.entry_point + "(*args, **kwargs):\n    return None\n```")
        assert not wrong["passed"] and wrong["status"] == "failed"


def test_chat_answer_redefines_the_stub_but_keeps_its_helpers(humaneval):
    p = humaneval[0]
    program = build_program(p, reference_completion(p))
    assert program.startswith(p.prompt) and program.rstrip().endswith(f"check({p.entry_point})")


def test_mbpp_bundled_references_pass_and_wrong_answers_fail():
    problems = load_mbpp()
    assert len(problems) == 8 and all(p.entry_point for p in problems)
    for p in problems:
        assert score(p, reference_completion(p))["passed"], p.task_id
        assert not score(p, "```python\ndef unrelated():\n    pass\n```")["passed"]
    assert "Your code should pass this test" in chat_prompt(problems[0])


def test_mbpp_bad_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "mbpp.jsonl"
    bad.write_text('{"text": "no tests here"}\n')
    with pytest.raises(CogumiError, match="line 1"):
        load_mbpp(str(bad))


def test_run_suite_scores_pass_at_1_and_keeps_errors(humaneval, scripted):
    """Two right, one looping forever, one endpoint failure: pass@1 = 2/3, one error with its reason."""
    answers = {humaneval[0].entry_point: reference_completion(humaneval[0]),
               humaneval[1].entry_point: reference_completion(humaneval[1]),
               humaneval[2].entry_point: "```python\ndef truncate_number(number):\n    while True:\n        pass\n```",
               humaneval[3].entry_point: ConnectionError("endpoint went away")}

    def reply(messages, params):
        text = messages[-1]["content"]
        return next(v for k, v in answers.items() if f"def {k}(" in text)

    res = run_suite(scripted(reply), humaneval, max_tokens=64, timeout_s=1.5)
    assert res["scored"] == 3 and res["passed"] == 2 and res["pass@1"] == pytest.approx(2 / 3)
    assert res["errors"] == 1
    by_id = {r["task_id"]: r for r in res["problems"]}
    assert by_id[humaneval[2].task_id]["status"] == "timeout"
    assert "endpoint went away" in by_id[humaneval[3].task_id]["reason"]
