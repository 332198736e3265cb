"""LLM judge with the spec's rubric: accuracy 0-3, completeness 0-2, coherence 0-2, helpfulness 0-3.

The verdict is asked for as JSON through the endpoint's structured output (a JSON
schema ``response_format``) when enabled, and parsed robustly either way (code
fences, prose around the object, key synonyms, ``key: n`` lines). A verdict that
does not parse is asked again with a different seed; after ``parse_attempts`` the
row is kept unscored (or dropped, per config) and counted.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cogumi.curate.client import MeteredEndpoint
from cogumi.curate.config import CurateConfig
from cogumi.curate.retry import RetriesExhausted
from cogumi.curate.rows import ERROR, FILTERED, is_ok, mark
from cogumi.models.inference import SamplingParams

RUBRIC = {"accuracy": 3, "completeness": 2, "coherence": 2, "helpfulness": 3}
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

VERDICT_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {k: {"type": "integer", "enum": list(range(v + 1))} for k, v in RUBRIC.items()},
            "required": list(RUBRIC),
            "additionalProperties": False,
        },
    },
}


def judge_messages(instruction: str, response: str) -> list[dict[str, str]]:
    """The judge's conversation for one example."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"INSTRUCTION:\n{instruction}\n\nRESPONSE:\n{response}"}]


def json_objects(text: str) -> list[str]:
    """Balanced ``{...}`` substrings, outermost first."""
    out, depth, start = [], 0, -1
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                out.append(text[start:i + 1])
    return out


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
        if value is None or not 0 <= value <= RUBRIC[key]:
            return None
        out[key] = value
    return out


def parse_verdict(text: str) -> dict[str, int] | None:
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
    return _from_mapping(found) if len(found) == len(RUBRIC) else None


def total_score(verdict: dict[str, int]) -> float:
    """The spec's 1-10 quality score (the rubric's sum, at least 1)."""
    return float(max(1, min(10, sum(verdict.values()))))


class JudgeStep:
    """Score a batch of rows; rows below ``min_judge_score`` are filtered."""

    def __init__(self, cfg: CurateConfig, endpoint: MeteredEndpoint):
        self.cfg, self.endpoint = cfg, endpoint

    def params(self, attempt: int) -> SamplingParams:
        j = self.cfg.judge
        return SamplingParams(max_tokens=j.max_tokens, temperature=0.0 if attempt == 0 else 0.7, seed=attempt,
                              response_format=VERDICT_SCHEMA if j.structured_output else None)

    def one(self, row: dict[str, Any]) -> dict[str, Any]:
        """Judge one row (or mark it error / filtered)."""
        if not is_ok(row):
            return row
        messages = judge_messages(row["instruction"], row["response"])
        tokens_in = tokens_out = unanswered = 0
        cost, estimated, cached, verdict, raw, answered = 0.0, 0.0, True, None, "", 0
        try:
            for attempt in range(self.cfg.judge.parse_attempts):
                res = self.endpoint.chat(messages, self.params(attempt))
                answered += 1
                gen = res.generation
                tokens_in += gen.usage.prompt_tokens
                tokens_out += gen.usage.completion_tokens
                cost, cached, raw = cost + res.cost_usd, cached and res.cached, gen.text
                unanswered, estimated = unanswered + res.unanswered, estimated + res.estimated_usd
                if (verdict := parse_verdict(gen.text)) is not None:
                    break
        except RetriesExhausted as exc:
            unanswered, estimated = unanswered + exc.unanswered, estimated + exc.estimated_usd
            cost, cached = cost + exc.estimated_usd, cached and not exc.unanswered
            return mark(row, ERROR, "judge", f"judge: {exc}")
        except Exception as exc:  # noqa: BLE001 - a row never takes the batch down
            return mark(row, ERROR, "judge", f"judge: {exc.__class__.__name__}: {exc}")
        finally:
            if answered or unanswered:
                row.update(judge_prompt_tokens=tokens_in, judge_completion_tokens=tokens_out,
                           judge_cost_usd=cost, judge_cached=cached, judge_unanswered=unanswered,
                           judge_estimated_usd=estimated)
        if verdict is None:
            row["judge_scores"] = json.dumps({"unscored": raw[:300]})
            if not self.cfg.judge.keep_unscored:
                mark(row, FILTERED, "judge", "judge verdict unparseable (unscored)")
            return row
        row["judge_scores"] = json.dumps(verdict, sort_keys=True)
        row["quality_score"] = total_score(verdict)
        if row["quality_score"] < self.cfg.min_judge_score:
            mark(row, FILTERED, "judge", f"judge score {row['quality_score']:g} < {self.cfg.min_judge_score:g}")
        return row

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        threads = self.cfg.judge.concurrency
        if threads <= 1 or len(rows) <= 1:
            return [self.one(r) for r in rows]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.one, rows))
