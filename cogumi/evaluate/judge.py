"""The answer-comparison (blind pairwise) judge of Phase 1B.

Not the quality-scoring judge of curation (:mod:`cogumi.endpoints.quality_judge`), which
rates one answer against a rubric.

The judge sees a question and two anonymous answers (A and B) and rates each on
correctness, completeness, clarity and conciseness (1-10). Each comparison is
asked twice with the answers' positions swapped (local model first, then the
reference first), so a judge that prefers whatever comes first favours each
side once. Verdicts are requested as JSON (a JSON-schema ``response_format``
where the endpoint supports it) and parsed defensively; a verdict that never
parses is recorded with the judge's text as the reason.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cogumi.endpoints.replies import json_objects
from cogumi.evaluate.calls import Caller, parallel_map
from cogumi.models.inference import SamplingParams

CRITERIA = ("correctness", "completeness", "clarity", "conciseness")
_SYNONYMS = {
    "correctness": ("correctness", "correct", "accuracy", "factual_accuracy"),
    "completeness": ("completeness", "complete"),
    "clarity": ("clarity", "clear", "coherence"),
    "conciseness": ("conciseness", "concise", "concision", "brevity"),
}
_SIDE_KEYS = {"a": ("answer_a", "a", "answer a", "assistant_a", "response_a"),
              "b": ("answer_b", "b", "answer b", "assistant_b", "response_b")}

SYSTEM = (
    "You are an impartial judge. Two anonymous assistants answered the same QUESTION. Judge only what the "
    "answers say, not their position or length. Rate EACH answer from 1 (worst) to 10 (best) on:\n"
    "- correctness: facts, logic, numbers and code are right\n"
    "- completeness: it addresses every part of the question\n"
    "- clarity: it is clear and well structured\n"
    "- conciseness: it is efficient, without filler\n"
    'Reply with only a JSON object: {"answer_a": {"correctness": n, "completeness": n, "clarity": n, '
    '"conciseness": n}, "answer_b": {"correctness": n, "completeness": n, "clarity": n, "conciseness": n}}'
)

_RATING = {"type": "object", "properties": {c: {"type": "integer", "enum": list(range(1, 11))} for c in CRITERIA},
           "required": list(CRITERIA), "additionalProperties": False}
PAIRWISE_VERDICT_SCHEMA = {"type": "json_schema", "json_schema": {"name": "pairwise_verdict", "strict": True, "schema": {
    "type": "object", "properties": {"answer_a": _RATING, "answer_b": _RATING},
    "required": ["answer_a", "answer_b"], "additionalProperties": False}}}


def pairwise_messages(question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    """The judge's conversation for one ordering of the two answers."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"QUESTION:\n{question}\n\nANSWER A:\n{answer_a or '(empty)'}\n\n"
                                        f"ANSWER B:\n{answer_b or '(empty)'}"}]


def _score(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        v = float(value)
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*", value)):
        v = float(m.group(1))
    else:
        return None
    return round(v) if 1 <= v <= 10 else None


def _rating(data: Any) -> dict[str, int] | None:
    if not isinstance(data, dict):
        return None
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    out = {}
    for criterion, names in _SYNONYMS.items():
        value = next((_score(lowered[n]) for n in names if n in lowered), None)
        if value is None:
            return None
        out[criterion] = value
    return out


def _from_json(data: Any) -> dict[str, dict[str, int]] | None:
    if not isinstance(data, dict):
        return None
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    sides = {}
    for side, names in _SIDE_KEYS.items():
        rating = next((_rating(lowered[n]) for n in names if n in lowered), None)
        if rating is None:
            return None
        sides[side] = rating
    return sides


def _from_prose(text: str) -> dict[str, dict[str, int]] | None:
    parts = re.split(r"(?i)\b(?:answer|assistant|response)[ _]?b\b", text, maxsplit=1)
    if len(parts) != 2:
        return None
    sides = {}
    for side, segment in zip("ab", parts):
        found = {}
        for criterion, names in _SYNONYMS.items():
            pattern = "|".join(re.escape(n) for n in names)
            m = re.search(rf"(?i)\b(?:{pattern})\b\W{{0,6}}(\d+(?:\.\d+)?)", segment)
            if m and (v := _score(m.group(1))) is not None:
                found[criterion] = v
        if len(found) != len(CRITERIA):
            return None
        sides[side] = found
    return sides


def parse_pairwise_verdict(text: str) -> dict[str, dict[str, int]] | None:
    """``{"a": {criterion: 1-10}, "b": {...}}`` from a judge reply, or None if it holds no full verdict."""
    for candidate in json_objects(text or ""):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if (verdict := _from_json(data)) is not None:
            return verdict
    return _from_prose(text or "")


def mean_score(rating: dict[str, int]) -> float:
    """The average of the four criteria."""
    return sum(rating[c] for c in CRITERIA) / len(CRITERIA)


class PairwiseJudgeStep:
    """Judge rows holding ``local_answer`` and ``reference_answer``.

    Writes ``judge_pass1`` (local as A) and, with ``swap``, ``judge_pass2`` (reference as A):
    each a JSON string ``{"local": {...}, "reference": {...}}`` or ``{"error": reason}``;
    plus ``judge_prompt_tokens``, ``judge_completion_tokens``, ``judge_calls``.
    """

    def __init__(self, model: Any, max_tokens: int = 160, parse_attempts: int = 2, structured_output: bool = True,
                 swap: bool = True, attempts: int = 3, threads: int = 1):
        self.caller = Caller(model, attempts)
        self.max_tokens, self.parse_attempts = max_tokens, parse_attempts
        self.structured, self.swap, self.threads = structured_output, swap, threads

    def _params(self, attempt: int) -> SamplingParams:
        return SamplingParams(max_tokens=self.max_tokens, temperature=0.0 if attempt == 0 else 0.7, seed=attempt,
                              response_format=PAIRWISE_VERDICT_SCHEMA if self.structured else None)

    def _pass(self, row: dict[str, Any], local_first: bool, acct: dict[str, int]) -> dict[str, Any]:
        local, ref = row.get("local_answer") or "", row.get("reference_answer") or ""
        a, b = (local, ref) if local_first else (ref, local)
        messages = pairwise_messages(row["prompt"], a, b)
        reason = "no verdict"
        for attempt in range(self.parse_attempts):
            out = self.caller.chat(messages, self._params(attempt))
            acct["calls"] += out.attempts
            acct["prompt_tokens"] += out.prompt_tokens
            acct["completion_tokens"] += out.completion_tokens
            if out.error:
                return {"error": f"judge call failed: {out.error}"}
            verdict = parse_pairwise_verdict(out.text or "")
            if verdict is not None:
                first, second = verdict["a"], verdict["b"]
                return {"local": first, "reference": second} if local_first else {"local": second, "reference": first}
            reason = f"judge gave no parsable scores: {(out.text or '').strip()[:200]!r}"
        return {"error": reason}

    def one(self, row: dict[str, Any]) -> dict[str, Any]:
        acct = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
        if row.get("local_error") or row.get("reference_error"):
            skipped = {"error": "not judged: an answer is missing"}
            out = {"judge_pass1": json.dumps(skipped), "judge_pass2": json.dumps(skipped) if self.swap else None}
        else:
            out = {"judge_pass1": json.dumps(self._pass(row, True, acct)),
                   "judge_pass2": json.dumps(self._pass(row, False, acct)) if self.swap else None}
        return row | out | {f"judge_{k}": v for k, v in acct.items()}

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return parallel_map(self.one, rows, self.threads)

    def close(self) -> None:
        self.caller.close()
