"""Reading structured answers out of model replies (JSON objects inside prose or code fences)."""

from __future__ import annotations


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
