"""PII detection and redaction: each kind, the Luhn check, and no false alarms on ordinary answers."""

from __future__ import annotations

import pytest

from cogumi.curate.pii import find_pii, luhn_ok, redact


@pytest.mark.parametrize("text,kind", [
    ("Mail me at jane.doe+news@example.co.uk please", "EMAIL"),
    ("Call (415) 555-0132 after six", "PHONE"),
    ("My number is +44 20 7946 0958.", "PHONE"),
    ("Card: 4111 1111 1111 1111, exp 09/27", "CARD"),
    ("Use 5500-0000-0000-0004 for the test", "CARD"),
    ("The server is at 8.8.4.4 in the logs", "IP"),
    ("IPv6 2001:4860:4860::8888 is public", None),  # compressed form not matched by design
    ("SSN 123-45-6789 on the form", "SSN"),
    ("National insurance AB 12 34 56 C", "NINO"),
    ("export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz012345", "API_KEY"),
    ("aws key AKIAIOSFODNN7EXAMPLE leaked", "API_KEY"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "API_KEY"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "PRIVATE_KEY"),
])
def test_each_kind_is_found(text, kind):
    kinds = {k for k, _, _ in find_pii(text)}
    assert kinds == ({kind} if kind else set())


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")


@pytest.mark.parametrize("text", [
    "The answer is 1234567890123 apples.",  # fails Luhn
    "Connect to 127.0.0.1:8080 or 192.168.1.10 on your LAN.",  # loopback/private
    "Version 1.2.3.4 of the library fixed it.",  # not a public IP? 1.2.3.4 is global: see below
    "Compute 3.14159 * 2 = 6.28318 and 100 - 45 = 55.",
    "The years 1990-2000 saw 15 % growth; call it 12-15 units.",
    "In Python, `x = [1, 2, 3]` and `d = {'a': 1}`.",
])
def test_ordinary_text_has_no_pii(text):
    found = find_pii(text)
    if "1.2.3.4" in text:
        assert [k for k, _, _ in found] == ["IP"]  # a global address is flagged even when it looks like a version
    else:
        assert found == []


def test_redact_replaces_spans_and_lists_kinds():
    text = "Email bob@corp.com or call 415-555-0132; card 4111111111111111."
    out, kinds = redact(text)
    assert out == "Email [EMAIL] or call [PHONE]; card [CARD]."
    assert kinds == ["CARD", "EMAIL", "PHONE"]
    assert redact("nothing here") == ("nothing here", [])
