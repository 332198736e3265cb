"""Calibration samples and held-out text for the compression steps.

Calibration comes from curated samples (``curated.parquet`` or JSONL in the
curated schema, rendered with the model's chat template) or from the built-in
set in :mod:`cogumi.compress.texts`. Held-out text for perplexity comes from a
file or from the built-in held-out set, which shares no passage with calibration.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from cogumi.compress.config import CalibrationConfig, QualityConfig
from cogumi.compress.errors import CompressError
from cogumi.compress.texts import CALIBRATION, HELD_OUT
from cogumi.schema import check_columns, normalise_record


def _read_rows(path: Path, where: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise CompressError(f"file {path} does not exist", where, "fix the path or leave it unset for the built-in set")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
            raise CompressError(f"{path} is not a readable parquet file ({exc})", where,
                                "write it with `cogumi curate` or pyarrow") from None
        return table.to_pylist()
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise CompressError(f"line {n} of {path} is not JSON ({exc.msg})", where,
                                        "write one JSON object per line") from None
        return rows
    if path.suffix == ".txt":
        return [{"text": p.strip()} for p in path.read_text().split("\n\n") if p.strip()]
    raise CompressError(f"unsupported file type {path.suffix!r} for {path}", where,
                        "use .parquet (curated schema), .jsonl or .txt")


def _render(row: dict[str, Any], tokenizer: Any, where: str) -> str:
    """One curated example as the model sees it in training: its chat template, or plain text."""
    if isinstance(row.get("text"), str):
        return row["text"]
    flat = normalise_record(row, where)
    messages = [{"role": "user", "content": flat["instruction"]},
                {"role": "assistant", "content": flat["response"]}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return f"{flat['instruction']}\n\n{flat['response']}"


def calibration_texts(cfg: CalibrationConfig, tokenizer: Any, step: str) -> tuple[list[str], str]:
    """The calibration texts and where they came from.

    Args:
        cfg: calibration settings.
        tokenizer: the model's tokenizer (for the chat template).
        step: the step asking (named in errors).

    Returns:
        (texts, source) with ``source`` the file path or ``"built-in"``.

    Raises:
        CompressError: unreadable file, missing columns, or fewer than ``min_samples`` usable samples.
    """
    if cfg.data:
        path = Path(cfg.data)
        where = f"compress {step} calibration: {path}"
        rows = _read_rows(path, where)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            check_columns(pq.read_schema(path), ("instruction", "response"), where)
        texts = [_render(r, tokenizer, f"{where} row {i}") for i, r in enumerate(rows)]
        source = str(path)
    else:
        where = f"compress {step} calibration: built-in set"
        texts, source = list(CALIBRATION), "built-in"
    texts = [t for t in texts if t.strip()]
    random.Random(cfg.seed).shuffle(texts)
    texts = texts[: cfg.num_samples]
    if len(texts) < cfg.min_samples:
        raise CompressError(f"only {len(texts)} calibration sample(s), fewer than the {cfg.min_samples} required",
                            where, "give more curated samples (compress.calibration.data) or lower "
                                   "compress.calibration.min_samples")
    return texts, source


def calibration_dataset(texts: list[str], tokenizer: Any, max_seq_length: int) -> Any:
    """Tokenised calibration set as the ``datasets.Dataset`` llmcompressor's ``oneshot`` takes."""
    from datasets import Dataset

    enc = [tokenizer(t, truncation=True, max_length=max_seq_length, add_special_tokens=True) for t in texts]
    return Dataset.from_dict({"input_ids": [e["input_ids"] for e in enc],
                              "attention_mask": [e["attention_mask"] for e in enc]})


def held_out_texts(cfg: QualityConfig) -> tuple[list[str], str]:
    """Held-out texts for perplexity and where they came from.

    Raises:
        CompressError: unreadable or empty file.
    """
    if not cfg.eval_data:
        return list(HELD_OUT), "built-in"
    path = Path(cfg.eval_data)
    where = f"compress quality gate: {path}"
    texts = []
    for i, row in enumerate(_read_rows(path, where)):
        if isinstance(row.get("text"), str):
            texts.append(row["text"])
        else:
            flat = normalise_record(row, f"{where} row {i}")
            texts.append(f"{flat['instruction']}\n\n{flat['response']}")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise CompressError(f"{path} holds no text", where, "give paragraphs (.txt) or rows with 'text'")
    return texts, str(path)
