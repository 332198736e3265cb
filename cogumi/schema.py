"""File contracts between stages: the curated instruction/response schema.

``curated.parquet`` (written by curation, read by training, evaluation and the
modifiers) has one row per kept example with the spec's standard fields, flattened:
``metadata.domain`` becomes the column ``domain``, and so on. JSONL files in the
spec's nested form (``{"instruction", "response", "metadata": {...}}``) and plain
``{"instruction", "output"}`` failure files are accepted by :func:`normalise_record`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cogumi.errors import CogumiError

DOMAINS = ("code", "reasoning", "math", "science", "conversation", "creative")
DIFFICULTIES = ("easy", "medium", "hard")

CURATED_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("instruction", pa.string(), nullable=False),
    pa.field("response", pa.string(), nullable=False),
    pa.field("domain", pa.string()),
    pa.field("difficulty", pa.string()),
    pa.field("teacher", pa.string()),
    pa.field("quality_score", pa.float64()),
    pa.field("tokens", pa.int64()),
    pa.field("source", pa.string()),
])
REQUIRED = ("instruction", "response")


def normalise_record(row: dict[str, Any], where: str = "record") -> dict[str, Any]:
    """One example in the flat curated form.

    Accepts the flat form, the spec's nested ``metadata`` form, and ``output`` as a
    synonym of ``response`` (Phase 1B failure files).

    Raises:
        CogumiError: instruction or response missing or not text.
    """
    flat = dict(row)
    meta = flat.pop("metadata", None) or {}
    if not isinstance(meta, dict):
        raise CogumiError("'metadata' must be an object", where, "fix the row or drop its metadata")
    flat = {**meta, **flat}
    if "response" not in flat and "output" in flat:
        flat["response"] = flat.pop("output")
    for key in REQUIRED:
        if not isinstance(flat.get(key), str) or not flat[key].strip():
            raise CogumiError(f"missing or empty '{key}'", where,
                              "each example needs non-empty 'instruction' and 'response' (or 'output') strings")
    out = {name: flat.get(name) for name in CURATED_SCHEMA.names}
    out["id"] = str(out["id"]) if out["id"] is not None else None
    return out


def check_columns(schema: pa.Schema, needed: tuple[str, ...], where: str) -> None:
    """Fail clearly when a table lacks columns a stage needs."""
    missing = [c for c in needed if c not in schema.names]
    if missing:
        raise CogumiError(f"input lacks column(s) {', '.join(missing)} (has: {', '.join(schema.names)})", where,
                          "produce it with `cogumi curate` or map your columns to the curated schema")
