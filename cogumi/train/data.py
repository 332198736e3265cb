"""Training examples: read the curated file (or Phase 1B failures), check it, split it, template it.

Inputs are Parquet in the curated schema (:data:`cogumi.schema.CURATED_SCHEMA`) or
JSONL in any form :func:`cogumi.schema.normalise_record` accepts, including
``{"instruction", "output"}`` failure files. A reference ``stage:<stage>/<file>``
points into the current run directory; anything else is a path or URI.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cogumi.artifacts import STAGE_PREFIX, Location, RunDir
from cogumi.errors import CogumiError
from cogumi.schema import check_columns, normalise_record

def resolve_ref(ref: str, run: RunDir) -> Location:
    """Turn ``stage:<stage>/<file>`` or a path/URI into a :class:`Location` (see :meth:`RunDir.resolve`)."""
    return run.resolve(ref, "train config")


def read_examples(loc: Location, where: str) -> list[dict[str, Any]]:
    """All examples of a Parquet or JSONL file, normalised to the flat curated form.

    Args:
        loc: the file.
        where: config key that named it (for error messages).

    Raises:
        CogumiError: missing, empty, malformed file, or rows without instruction/response.
    """
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.NotFound:
        hint = ("run the stage that writes it first (e.g. `cogumi curate`)" if loc.ref.startswith(STAGE_PREFIX)
                else "check the path")
        raise CogumiError(f"training file {loc.ref} does not exist ({loc.path})", where, hint)
    if info.type != pafs.FileType.File:
        raise CogumiError(f"{loc.ref} is not a file", where, "point it at a .parquet or .jsonl file")
    if loc.path.endswith(".parquet"):
        rows = _read_parquet(loc, where)
    elif loc.path.endswith((".jsonl", ".json")):
        rows = _read_jsonl(loc, where)
    else:
        raise CogumiError(f"{loc.ref} is neither .parquet nor .jsonl", where,
                          "convert it to the curated Parquet schema or JSONL with instruction/response")
    if not rows:
        raise CogumiError(f"training file {loc.ref} holds no examples", where,
                          "check that curation kept some rows, or point at a non-empty file")
    return [normalise_record(r, f"{loc.ref} row {i + 1}") for i, r in enumerate(rows)]


def _read_parquet(loc: Location, where: str) -> list[dict[str, Any]]:
    try:
        with loc.fs.open_input_file(loc.path) as f:
            table = pq.read_table(f)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise CogumiError(f"{loc.ref} is not a readable Parquet file ({exc.__class__.__name__}: "
                          f"{str(exc)[:160]})", where, "rewrite the file with `cogumi curate`") from None
    if "response" not in table.schema.names and "output" in table.schema.names:
        table = table.rename_columns(["response" if n == "output" else n for n in table.schema.names])
    check_columns(table.schema, ("instruction", "response"), f"{where} ({loc.ref})")
    return table.to_pylist()


def _read_jsonl(loc: Location, where: str) -> list[dict[str, Any]]:
    with loc.fs.open_input_stream(loc.path) as f:
        text = f.read().decode("utf-8", errors="replace")
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CogumiError(f"line {n} of {loc.ref} is not valid JSON ({exc.msg})", f"{loc.path}:{n}",
                              "fix or remove that line; each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise CogumiError(f"line {n} of {loc.ref} is a {type(row).__name__}, not an object",
                              f"{loc.path}:{n}", 'write one {"instruction": ..., "response"|"output": ...} per line')
        rows.append(row)
    return rows


def split_examples(rows: list[dict[str, Any]], val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded train/validation split; at least one validation example when fraction > 0.

    Returns:
        (train, validation); with a single example both hold it (a smoke run).
    """
    if val_fraction <= 0:
        return list(rows), []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(rows) * val_fraction))
    if n_val >= len(rows):
        return list(rows), [rows[order[0]]]
    return [rows[i] for i in order[n_val:]], [rows[i] for i in order[:n_val]]


def to_prompt_completion(row: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """One example as TRL's conversational prompt–completion pair (loss on the response only)."""
    return {"prompt": [{"role": "user", "content": row["instruction"]}],
            "completion": [{"role": "assistant", "content": row["response"]}]}


def template_overhead(tokenizer: Any) -> int:
    """Tokens the chat template adds around a one-token instruction and response."""
    if not getattr(tokenizer, "chat_template", None):
        raise CogumiError("the student's tokenizer has no chat template", "student.model",
                          "use an instruct model (its tokenizer_config.json has a chat_template)")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
                                        tokenize=True, return_dict=True)["input_ids"]
    return len(ids) - 2


def check_lengths(tokenizer: Any, rows: list[dict[str, Any]], max_seq_length: int,
                  sample: int = 2000) -> dict[str, float]:
    """Check ``max_seq_length`` against the chat template and measure the examples.

    Args:
        tokenizer: the student's tokenizer.
        rows: examples (a seeded sample of ``sample`` is measured).
        max_seq_length: the configured sequence length.

    Returns:
        ``template_tokens``, ``mean_tokens``, ``max_tokens`` and ``truncated_fraction``.

    Raises:
        CogumiError: the template alone does not leave room for a response.
    """
    overhead = template_overhead(tokenizer)
    if max_seq_length < overhead + 8:
        raise CogumiError(f"train.max_seq_length={max_seq_length} is smaller than the chat template itself "
                          f"({overhead} tokens) plus room for an answer", "train.max_seq_length",
                          f"set it to at least {overhead + 8}; the spec uses 1024-2048")
    picked = rows if len(rows) <= sample else random.Random(0).sample(rows, sample)
    lengths = [len(tokenizer.apply_chat_template(
        [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["response"]}],
        tokenize=True, return_dict=True)["input_ids"]) for r in picked]
    return {"template_tokens": overhead, "mean_tokens": sum(lengths) / len(lengths), "max_tokens": max(lengths),
            "truncated_fraction": sum(n > max_seq_length for n in lengths) / len(lengths)}
