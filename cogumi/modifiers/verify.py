"""Verification of one answer: tests for code, the final number for math, the judge otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cogumi.endpoints.quality_judge import (
    QUALITY_VERDICT_SCHEMA,
    parse_quality_verdict,
    quality_messages,
    quality_score,
)
from cogumi.evaluate.answers import extract_code, final_number, format_number, numbers_equal
from cogumi.models.inference import SamplingParams


@dataclass
class Verdict:
    """Whether an answer passed, its score (0/1 for code and math, 1-10 for the judge) and why."""

    passed: bool
    score: float | None
    detail: str
    cost_usd: float = 0.0


def check_code(task: dict[str, Any], answer: str, timeout_s: float = 10.0) -> Verdict:
    """Run the answer's code with the task's assertions in the evaluation sandbox."""
    from cogumi.evaluate.sandbox import run_program

    program = extract_code(answer) + "\n\n" + "\n".join(task["tests"]) + "\n"
    res = run_program(program, timeout_s=timeout_s)
    return Verdict(res.passed, 1.0 if res.passed else 0.0, "tests passed" if res.passed else
                   f"execution {res.status}: {res.reason[:160]}")


def check_math(task: dict[str, Any], answer: str) -> Verdict:
    """Compare the answer's final number with the task's expected number."""
    got = format_number(final_number(answer))
    ok = numbers_equal(got, str(task["answer"]))
    return Verdict(ok, 1.0 if ok else 0.0, f"final answer {got} vs expected {task['answer']}")


def check_judge(task: dict[str, Any], answer: str, judge: Any, min_score: float, attempts: int = 2) -> Verdict:
    """Score with the LLM judge (curation's rubric, 1-10); passes at ``min_score``.

    Args:
        judge: a :class:`cogumi.endpoints.metered.MeteredEndpoint`.
    """
    messages = quality_messages(task["prompt"], answer)
    cost = 0.0
    for attempt in range(attempts):
        params = SamplingParams(max_tokens=96, temperature=0.0 if attempt == 0 else 0.7, seed=attempt,
                                response_format=QUALITY_VERDICT_SCHEMA)
        res = judge.chat(messages, params)
        cost += res.cost_usd
        verdict = parse_quality_verdict(res.generation.text)
        if verdict is not None:
            score = quality_score(verdict)
            return Verdict(score >= min_score, score, f"judge {score:g} (pass at {min_score:g})", cost)
    return Verdict(False, None, "judge verdict unparseable", cost)


def verify(kind: str, task: dict[str, Any], answer: str, judge: Any = None, min_score: float = 7.0,
           timeout_s: float = 10.0) -> Verdict:
    """Verify ``answer`` to ``task`` the way its domain asks.

    Args:
        kind: ``code``, ``math`` or ``judge``.
        task: the task row (``tests`` for code, ``answer`` for math).
        answer: the model's text.
        judge: metered judge endpoint (``judge`` kind only).
        min_score: the judge's pass mark.
        timeout_s: sandbox limit (code).

    Returns:
        A :class:`Verdict`.
    """
    if kind == "code":
        return check_code(task, answer, timeout_s)
    if kind == "math":
        return check_math(task, answer)
    if judge is None:
        raise ValueError("judge verification needs a judge endpoint")
    return check_judge(task, answer, judge, min_score)
