"""One JSONL reader: a malformed line is an error naming the file and the line number."""

from __future__ import annotations

import json
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from cogumi.errors import CogumiError


class MalformedJsonl(CogumiError, ValueError):
    """A line of a JSONL file is not JSON (also a ``ValueError``, as ``json`` errors are)."""


def parse_jsonl(text: str, source: str) -> list[Any]:
    """The JSON value of every non-blank line of ``text``.

    Args:
        text: the file's contents.
        source: where it came from (a path or URI), for the error message.

    Raises:
        MalformedJsonl: a line is not JSON (says which line of which file).
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise MalformedJsonl(f"line {number} of {source} is not JSON ({exc.msg} at column {exc.colno})",
                                 f"{source}:{number}", "write one JSON object per line") from None
    return rows


def read_jsonl(path: str | Path | Traversable) -> list[Any]:
    """The JSON value of every non-blank line of the local file (or package resource) ``path``.

    Raises:
        OSError: the file cannot be read.
        MalformedJsonl: a line is not JSON.
    """
    source = Path(path) if isinstance(path, str) else path
    return parse_jsonl(source.read_text(encoding="utf-8"), str(path))
