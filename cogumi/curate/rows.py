"""The working row of the curation pipeline and its fixed Arrow schema.

Every input row travels through every stage; a stage that rejects it sets
``status`` to ``error`` (something failed: ``reason`` holds the error) or
``filtered`` (a rule or the judge or dedup removed it: ``reason`` says why) and
later stages pass it through untouched. Nothing is dropped before the end, so
the accounting file lists every input row with its fate.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

OK, ERROR, FILTERED = "ok", "error", "filtered"

ROW_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("location", pa.string()),  # file:line / file#row / hf name[split][index]
    ("instruction", pa.string()),
    ("domain", pa.string()),
    ("difficulty", pa.string()),
    ("source", pa.string()),
    ("status", pa.string()),
    ("stage", pa.string()),  # the stage that set a non-ok status
    ("reason", pa.string()),
    ("teacher", pa.string()),
    ("response", pa.string()),
    ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("cost_usd", pa.float64()),  # answer + estimate for unanswered attempts
    ("cached", pa.bool_()),
    ("attempts", pa.int64()),
    ("unanswered_attempts", pa.int64()),  # timed out on the client: may have been billed
    ("estimated_usd", pa.float64()),  # the estimated part of cost_usd (their prompt tokens)
    ("batch_id", pa.string()),  # the provider batch that answered (batch mode), else null
    ("judge_scores", pa.string()),  # JSON of the rubric parts
    ("quality_score", pa.float64()),
    ("judge_prompt_tokens", pa.int64()),
    ("judge_completion_tokens", pa.int64()),
    ("judge_cost_usd", pa.float64()),
    ("judge_cached", pa.bool_()),
    ("judge_unanswered", pa.int64()),
    ("judge_estimated_usd", pa.float64()),
    ("judge_batch_id", pa.string()),
    ("tokens", pa.int64()),
    ("language", pa.string()),
    ("language_prob", pa.float64()),
    ("pii", pa.string()),
    ("duplicate_of", pa.string()),
    ("cluster", pa.string()),
])
COLUMNS = tuple(ROW_SCHEMA.names)


def new_row(**values: Any) -> dict[str, Any]:
    """A row with every column present (None where unset) and status ``ok``."""
    row = dict.fromkeys(COLUMNS)
    row["status"] = OK
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown row columns {sorted(unknown)}")
    row.update(values)
    return row


def mark(row: dict[str, Any], status: str, stage: str, reason: str) -> dict[str, Any]:
    """Set a non-ok status with the stage and the reason (an error message or a filter reason)."""
    row["status"], row["stage"], row["reason"] = status, stage, reason[:2000]
    return row


def is_ok(row: dict[str, Any]) -> bool:
    return row.get("status") == OK


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows -> Arrow with :data:`ROW_SCHEMA` (the same types in every block)."""
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=ROW_SCHEMA)


def from_table(batch: pa.Table) -> list[dict[str, Any]]:
    """Arrow batch -> rows with every column present."""
    rows = batch.to_pylist()
    for r in rows:
        for c in COLUMNS:
            r.setdefault(c, None)
    return rows
