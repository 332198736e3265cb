"""Find and redact personal data: emails, phone numbers, card numbers (Luhn), IPs, national ids, API keys.

Patterns favour precision on instruction data, which is full of numbers: a card
number must pass the Luhn check, an IP address must be public (loopback, private
and documentation ranges in code samples are not personal), a phone number needs
phone-like grouping.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

PLACEHOLDER = "[{kind}]"


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum (payment card numbers)."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


def _public_ip(match: re.Match) -> bool:
    try:
        ip = ipaddress.ip_address(match.group(0))
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class Pattern:
    """One kind of PII: a regex and an optional validator of each match."""

    kind: str
    regex: re.Pattern
    valid: Callable[[re.Match], bool] | None = None


PATTERNS: tuple[Pattern, ...] = (
    Pattern("PRIVATE_KEY", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )?PRIVATE KEY-----")),
    Pattern("API_KEY", re.compile(
        r"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}|"
        r"xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|sk_live_[0-9A-Za-z]{24,})")),
    Pattern("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    Pattern("CARD", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card),
    Pattern("SSN", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")),
    Pattern("NINO", re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")),
    Pattern("IP", re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])|\b(?:[0-9A-Fa-f]{1,4}:){3,7}[0-9A-Fa-f]{1,4}\b"),
            _public_ip),
    Pattern("PHONE", re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\w)"
        r"|(?<![\w+])\+\d{1,3}[ .-]\d{1,4}(?:[ .-]\d{2,4}){2,4}(?!\w)")),
)


def find_pii(text: str) -> list[tuple[str, int, int]]:
    """Non-overlapping ``(kind, start, end)`` spans, earlier patterns winning overlaps."""
    spans: list[tuple[str, int, int]] = []
    for pat in PATTERNS:
        for m in pat.regex.finditer(text):
            if pat.valid is not None and not pat.valid(m):
                continue
            if any(m.start() < e and s < m.end() for _, s, e in spans):
                continue
            spans.append((pat.kind, m.start(), m.end()))
    return sorted(spans, key=lambda s: s[1])


def redact(text: str) -> tuple[str, list[str]]:
    """Replace every PII span with ``[KIND]``.

    Returns:
        (redacted text, sorted kinds found).
    """
    spans = find_pii(text)
    if not spans:
        return text, []
    out, pos = [], 0
    for kind, start, end in spans:
        out += [text[pos:start], PLACEHOLDER.format(kind=kind)]
        pos = end
    out.append(text[pos:])
    return "".join(out), sorted({k for k, _, _ in spans})
