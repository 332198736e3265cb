"""Answer extraction shared by the scorers: final numbers, code blocks, normalised text."""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?"
_MARKED = [
    re.compile(rf"####\s*({_NUMBER})"),
    re.compile(rf"\\boxed\{{\s*({_NUMBER})\s*\}}"),
    re.compile(rf"(?i)(?:final answer|the answer|answer)\s*(?:is|:|=)?\s*:?\s*\**\s*({_NUMBER})"),
]
_ANY_NUMBER = re.compile(_NUMBER)
_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.S)


def parse_number(text: str) -> Fraction | None:
    """``"1,234"``, ``"$5"``, ``"-2.50"``, ``"3/4"`` as an exact number (None when it is not one)."""
    s = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def final_number(text: str) -> Fraction | None:
    """The answer a math solution commits to.

    Looks for ``#### n``, ``\\boxed{n}`` and "the answer is n" first (the last such
    mark wins), then falls back to the last number in the text.
    """
    for pattern in _MARKED:
        hits = pattern.findall(text or "")
        if hits:
            return parse_number(hits[-1])
    numbers = _ANY_NUMBER.findall(text or "")
    return parse_number(numbers[-1]) if numbers else None


def format_number(value: Fraction | None) -> str | None:
    """Canonical text of an extracted number (``12``, ``2.5``, ``1/3``)."""
    if value is None:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:  # not a terminating decimal
        return str(value)
    from decimal import Decimal

    text = str(Decimal(value.numerator) / Decimal(value.denominator))
    return text.rstrip("0").rstrip(".") if "." in text else text


def numbers_equal(predicted: str | None, expected: str | None) -> bool:
    """True when both parse as numbers and are equal."""
    if predicted is None or expected is None:
        return False
    a, b = parse_number(predicted), parse_number(expected)
    return a is not None and b is not None and a == b


def code_blocks(text: str) -> list[str]:
    """Fenced code blocks (``python``/``py``/bare fences); an unclosed last fence counts."""
    return [b.strip("\n") for b in _FENCE.findall(text or "") if b.strip()]


def extract_code(text: str) -> str:
    """The program in a model answer: the fenced block(s), else the whole text."""
    blocks = code_blocks(text)
    return "\n\n".join(blocks) if blocks else (text or "").strip("\n")


def normalise_text(text: str) -> str:
    """Lower-case words only, for comparing short free-text answers."""
    return " ".join(re.findall(r"[a-z0-9]+", (text or "").lower()))


def short_answer(text: str) -> str:
    """A short free-text answer's key: the number it ends on, else its last line's words."""
    number = final_number(text)
    if number is not None:
        return format_number(number) or ""
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    last = lines[-1]
    m = re.search(r"(?i)answer\s*(?:is|:)\s*(.+)", last)
    return normalise_text(m.group(1) if m else last)


def char_ngrams(text: str, n: int = 3) -> set[str]:
    """Character n-grams of the normalised text."""
    s = normalise_text(text)
    return {s[i:i + n] for i in range(max(1, len(s) - n + 1))} if s else set()


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
