"""Small training files in the curated schema, written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cogumi.schema import CURATED_SCHEMA


def sum_rows(n: int = 12) -> list[dict]:
    """Short arithmetic instruction/response pairs (the same few, so a tiny model can fit them)."""
    return [{"id": f"ex{i}", "instruction": f"What is {i} plus {i}?", "response": f"{i} plus {i} is {2 * i}.",
             "domain": "math", "difficulty": "easy", "teacher": "test", "quality_score": 9.0, "tokens": 12,
             "source": "tests"} for i in range(n)]


def write_parquet(path: Path, rows: list[dict]) -> Path:
    """``curated.parquet`` with the curated schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{k: r.get(k) for k in CURATED_SCHEMA.names} for r in rows], schema=CURATED_SCHEMA)
    pq.write_table(table, path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """One JSON object per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def failure_rows(n: int = 6) -> list[dict]:
    """Phase 1B failure file rows: ``{"instruction", "output"}`` as the evaluation stage writes them."""
    return [{"instruction": f"What is {i} times 3?", "output": f"{i} times 3 is {3 * i}."} for i in range(n)]
