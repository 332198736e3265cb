"""Curation's quality-scoring judge over rows (rubric and parsing: :mod:`cogumi.endpoints.quality_judge`).

A verdict that does not parse is asked again with a different seed; after
``parse_attempts`` the row is kept unscored (or dropped, per config) and counted.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cogumi.curate.config import CurateConfig
from cogumi.curate.rows import ERROR, FILTERED, is_ok, mark
from cogumi.endpoints.metered import MeteredEndpoint
from cogumi.endpoints.quality_judge import (
    QUALITY_VERDICT_SCHEMA,
    parse_quality_verdict,
    quality_messages,
    quality_score,
)
from cogumi.endpoints.retry import RetriesExhausted
from cogumi.models.inference import SamplingParams


class QualityJudgeStep:
    """Score a batch of rows; rows below ``min_judge_score`` are filtered."""

    def __init__(self, cfg: CurateConfig, endpoint: MeteredEndpoint):
        self.cfg, self.endpoint = cfg, endpoint

    def params(self, attempt: int) -> SamplingParams:
        j = self.cfg.judge
        return SamplingParams(max_tokens=j.max_tokens, temperature=0.0 if attempt == 0 else 0.7, seed=attempt,
                              response_format=QUALITY_VERDICT_SCHEMA if j.structured_output else None)

    def one(self, row: dict[str, Any]) -> dict[str, Any]:
        """Judge one row (or mark it error / filtered)."""
        if not is_ok(row):
            return row
        messages = quality_messages(row["instruction"], row["response"])
        batch_id = None
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
                batch_id = batch_id or res.batch_id
                if (verdict := parse_quality_verdict(gen.text)) is not None:
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
                           judge_estimated_usd=estimated, judge_batch_id=batch_id)
        if verdict is None:
            row["judge_scores"] = json.dumps({"unscored": raw[:300]})
            if not self.cfg.judge.keep_unscored:
                mark(row, FILTERED, "judge", "judge verdict unparseable (unscored)")
            return row
        row["judge_scores"] = json.dumps(verdict, sort_keys=True)
        row["quality_score"] = quality_score(verdict)
        if row["quality_score"] < self.cfg.min_judge_score:
            mark(row, FILTERED, "judge", f"judge score {row['quality_score']:g} < {self.cfg.min_judge_score:g}")
        return row

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        threads = self.cfg.judge.concurrency
        if threads <= 1 or len(rows) <= 1:
            return [self.one(r) for r in rows]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.one, rows))
