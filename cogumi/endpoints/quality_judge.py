"""The quality-scoring judge's rubric (the spec's): accuracy 0-3, completeness 0-2, coherence 0-2, helpfulness 0-3.

Curation scores teacher answers with it (:class:`cogumi.curate.judge.QualityJudgeStep`)
and the modifiers' cascade verifies answers with it. Not to be confused with the
answer-comparison (pairwise) judge of evaluation, :mod:`cogumi.evaluate.judge`.
The verdict is asked for as JSON through structured output (a JSON-schema
``response_format``) when enabled, and parsed robustly either way (code fences,
prose around the object, key synonyms, ``key: n`` lines).
"""

from __future__ import annotations

import json
import re
from typing import Any

from cogumi.endpoints.replies import json_objects

QUALITY_RUBRIC = {"accuracy": 3, "completeness": 2, "coherence": 2, "helpfulness": 3}
_SYNONYMS = {
    "accuracy": ("accuracy", "factual_accuracy", "factual accuracy", "correctness"),
    "completeness": ("completeness", "complete"),
    "coherence": ("coherence", "clarity"),
    "helpfulness": ("helpfulness", "helpful", "usefulness"),
}

SYSTEM = (
    "You grade answers for a training data set. Score the RESPONSE to the INSTRUCTION on four criteria:\n"
    "- accuracy (0-3): facts, reasoning, code and numbers are correct\n"
    "- completeness (0-2): it does everything the instruction asks\n"
    "- coherence (0-2): it is well organised and easy to follow\n"
    "- helpfulness (0-3): a user would find it useful as written\n"
    'Reply with only a JSON object: {"accuracy": n, "completeness": n, "coherence": n, "helpfulness": n}'
)

QUALITY_VERDICT_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {k: {"type": "integer", "enum": list(range(v + 1))} for k, v in QUALITY_RUBRIC.items()},
            "required": list(QUALITY_RUBRIC),
            "additionalProperties": False,
        },
    },
}


def quality_messages(instruction: str, response: str) -> list[dict[str, str]]:
    """The judge's conversation for one example."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"INSTRUCTION:\n{instruction}\n\nRESPONSE:\n{response}"}]


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.0+)?\s*(/\s*\d+)?\s*", value):
        return int(float(value.split("/")[0]))
    return None


def _from_mapping(data: dict[str, Any]) -> dict[str, int] | None:
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    out = {}
    for key, names in _SYNONYMS.items():
        value = next((_as_int(lowered[n]) for n in names if n in lowered), None)
        if value is None or not 0 <= value <= QUALITY_RUBRIC[key]:
            return None
        out[key] = value
    return out


def parse_quality_verdict(text: str) -> dict[str, int] | None:
    """The four rubric scores in ``text``, or None when they are not all there and in range."""
    for candidate in json_objects(text or ""):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and (verdict := _from_mapping(data)) is not None:
            return verdict
    found = {}
    for key, names in _SYNONYMS.items():
        pattern = "|".join(re.escape(n).replace(r"\ ", r"[ _]") for n in names)
        m = re.search(rf"(?i)\b(?:{pattern})\b\W{{0,4}}(\d+)(?![\d.])", text or "")
        if m:
            found[key] = m.group(1)
    return _from_mapping(found) if len(found) == len(QUALITY_RUBRIC) else None


def quality_score(verdict: dict[str, int]) -> float:
    """The spec's 1-10 quality score (the rubric's sum, at least 1)."""
    return float(max(1, min(10, sum(verdict.values()))))
