"""Prompt sources: the spec's datasets' field mappings, JSONL/Parquet/HF parsing with row locations.

A source record becomes a pipeline row (:mod:`cogumi.curate.rows`) holding the
instruction, a domain and difficulty (from the record when it has them, from
:mod:`cogumi.curate.categorise` otherwise) and the source name. A record that
cannot be used becomes an ``error`` row that names its location (``file:line``)
and what is wrong, so one bad line never hides the others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cogumi.curate.categorise import guess_difficulty, guess_domain
from cogumi.curate.rows import ERROR, mark, new_row
from cogumi.schema import DIFFICULTIES, DOMAINS

SEED_FILE = Path(__file__).parent / "data" / "seed_prompts.jsonl"

# HF dataset names of the spec's sources -> mapping name
HF_NAMES = {
    "vicgalle/alpaca-gpt4": "alpaca-gpt4",
    "anthropic/hh-rlhf": "anthropic-hh",
    "sahil2801/codealpaca-20k": "codealpaca",
    "databricks/databricks-dolly-15k": "dolly",
    "meta-math/metamathqa": "metamathqa",
    "open-orca/openorca": "openorca",
}

DOLLY_DOMAINS = {"creative_writing": "creative", "brainstorming": "creative", "open_qa": "science",
                 "general_qa": "science", "closed_qa": "reasoning", "classification": "reasoning",
                 "information_extraction": "reasoning", "summarization": "conversation"}


class RecordError(ValueError):
    """A record that cannot become a prompt (the message says why)."""


def _text(rec: dict[str, Any], key: str, required: bool = True) -> str:
    value = rec.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RecordError(f"missing or empty field '{key}'")
        return ""
    if not isinstance(value, str):
        raise RecordError(f"field '{key}' must be text, got {type(value).__name__}")
    return value.strip()


def _with_input(instruction: str, extra: str) -> str:
    return f"{instruction}\n\n{extra}" if extra else instruction


def _alpaca(rec: dict[str, Any]) -> dict[str, Any]:
    return {"instruction": _with_input(_text(rec, "instruction"), _text(rec, "input", False))}


def _first_human_turn(rec: dict[str, Any]) -> dict[str, Any]:
    dialogue = _text(rec, "chosen")
    start = dialogue.find("Human:")
    if start < 0:
        raise RecordError("field 'chosen' has no 'Human:' turn")
    end = dialogue.find("Assistant:", start)
    turn = dialogue[start + len("Human:"):end if end >= 0 else None].strip()
    if not turn:
        raise RecordError("the first 'Human:' turn is empty")
    return {"instruction": turn, "domain": "conversation"}


def _codealpaca(rec: dict[str, Any]) -> dict[str, Any]:
    return _alpaca(rec) | {"domain": "code"}


def _dolly(rec: dict[str, Any]) -> dict[str, Any]:
    out = {"instruction": _with_input(_text(rec, "instruction"), _text(rec, "context", False))}
    category = rec.get("category")
    if isinstance(category, str) and category in DOLLY_DOMAINS:
        out["domain"] = DOLLY_DOMAINS[category]
    return out


def _metamath(rec: dict[str, Any]) -> dict[str, Any]:
    kind = str(rec.get("type") or "")
    return {"instruction": _text(rec, "query"), "domain": "math",
            "difficulty": "hard" if kind.startswith("MATH") else "medium" if kind.startswith("GSM") else None}


def _openorca(rec: dict[str, Any]) -> dict[str, Any]:
    return {"instruction": _text(rec, "question")}


def _plain(rec: dict[str, Any]) -> dict[str, Any]:
    for key in ("instruction", "prompt", "question", "query"):
        if key in rec:
            out = {"instruction": _text(rec, key)}
            break
    else:
        raise RecordError("no prompt field: expected one of instruction, prompt, question, query "
                          f"(has: {', '.join(sorted(rec)) or 'nothing'})")
    for key in ("domain", "difficulty", "source"):
        if rec.get(key) is not None:
            out[key] = rec[key]
    return out


MAPPINGS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "alpaca-gpt4": _alpaca, "anthropic-hh": _first_human_turn, "codealpaca": _codealpaca, "dolly": _dolly,
    "metamathqa": _metamath, "openorca": _openorca, "plain": _plain,
}


def detect_format(columns: set[str], hint: str = "") -> str:
    """The mapping that fits these columns (``hint``: a file or dataset name)."""
    hint = hint.lower()
    if {"chosen", "rejected"} <= columns:
        return "anthropic-hh"
    if {"instruction", "context", "response", "category"} <= columns:
        return "dolly"
    if {"query", "response", "type"} <= columns:
        return "metamathqa"
    if {"system_prompt", "question", "response"} <= columns:
        return "openorca"
    if {"instruction", "input", "output"} <= columns:
        return "codealpaca" if "code" in hint else "alpaca-gpt4"
    return "plain"


def input_id(rec: dict[str, Any]) -> str | None:
    """The record's own ``id`` as text (None when it has none).

    Raises:
        RecordError: the id is not a non-empty string or an integer.
    """
    value = rec.get("id")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"field 'id' must be a non-empty string, got {value!r:.60}")
    return value


def record_to_row(rec: Any, fmt: str, location: str, row_id: str, source: str) -> dict[str, Any]:
    """One source record -> a pipeline row (an ``error`` row when the record is unusable).

    Args:
        rec: the parsed record (anything: non-objects become error rows).
        fmt: a mapping name or ``auto``.
        location: where the record is, for messages (``file:line``).
        row_id: the row's id when the record has no ``id`` of its own.
        source: source name recorded in the output (``alpaca-gpt4``, ``cogumi-seed``...).
    """
    row = new_row(id=row_id, location=location, source=source)
    try:
        if not isinstance(rec, dict):
            raise RecordError(f"a record must be a JSON object, got {type(rec).__name__}")
        row["id"] = input_id(rec) or row_id
        name = detect_format(set(rec), source) if fmt == "auto" else fmt
        fields = MAPPINGS[name](rec)
        row["source"] = str(fields.get("source") or (name if source == "auto" else source))
        row["instruction"] = fields["instruction"]
        domain, difficulty = fields.get("domain"), fields.get("difficulty")
        if domain is not None and domain not in DOMAINS:
            raise RecordError(f"unknown domain '{domain}' (use one of {', '.join(DOMAINS)})")
        if difficulty is not None and difficulty not in DIFFICULTIES:
            raise RecordError(f"unknown difficulty '{difficulty}' (use one of {', '.join(DIFFICULTIES)})")
        row["domain"] = domain or guess_domain(row["instruction"])
        row["difficulty"] = difficulty or guess_difficulty(row["instruction"])
    except RecordError as exc:
        mark(row, ERROR, "load", f"{location}: {exc}")
    return row


def parse_jsonl_lines(lines: Iterator[bytes], first_line: int, path: str, fmt: str, source: str,
                      stem: str) -> Iterator[dict[str, Any]]:
    """Rows of raw JSONL lines; blank lines are skipped, bad lines become error rows.

    Args:
        lines: raw lines (bytes, newline optional).
        first_line: 1-based number of the first line.
        path: file name for locations.
        stem: id prefix.
    """
    for offset, raw in enumerate(lines):
        number = first_line + offset
        location, row_id = f"{path}:{number}", f"{stem}-L{number}"
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield mark(new_row(id=row_id, location=location, source=source), ERROR, "load",
                       f"{location}: line is not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 4]!r})")
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as exc:
            yield mark(new_row(id=row_id, location=location, source=source), ERROR, "load",
                       f"{location}: malformed JSON ({exc.msg} at column {exc.colno})")
            continue
        yield record_to_row(rec, fmt, location, row_id, source)


def _location_order(location: str) -> list[Any]:
    """Sort key that puts ``f:9`` before ``f:10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", location)]


def duplicate_ids(rows: Iterable[tuple[str, str]], limit: int = 5) -> list[str]:
    """Messages for ids used more than once, from ``(id, location)`` pairs (at most ``limit``).

    Ids identify rows through the pipeline (teacher routing, dedup, the accounting file), so they
    must be unique across the whole input. Pairs may come in any order (parallel readers); each
    message names the later line and the first one.
    """
    places: dict[str, list[str]] = {}
    for row_id, location in rows:
        places.setdefault(row_id, []).append(location)
    found = []
    for row_id, locs in places.items():
        if len(locs) > 1:
            first, second, *more = sorted(locs, key=_location_order)
            found.append((second, f"{second}: id '{row_id}' is already used at {first}"
                          + (f" (and again at {len(more)} more line(s))" if more else "")))
    found.sort(key=lambda item: _location_order(item[0]))
    return [message for _, message in found[:limit]]


def iter_jsonl(path: str | Path, fmt: str = "auto", source: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a whole JSONL file, read line by line (the in-process reader)."""
    path = Path(path)
    with open(path, "rb") as f:
        yield from parse_jsonl_lines(iter(f), 1, str(path), fmt, source or _source_name(path, fmt),
                                     path.stem)


def _source_name(path: Path, fmt: str) -> str:
    """``cogumi-seed`` for the shipped seed set, else the mapping name (``auto``: detected per record)."""
    return "cogumi-seed" if path.resolve() == SEED_FILE.resolve() else fmt


def embedded_seed_path() -> Path:
    """The seed prompt set shipped with Cogumi (``prompts: embedded``)."""
    return SEED_FILE
