"""Answer extraction: final numbers, code blocks, short answers, similarity."""

from __future__ import annotations

from fractions import Fraction

import pytest

from cogumi.evaluate.answers import (
    char_ngrams,
    code_blocks,
    extract_code,
    final_number,
    format_number,
    jaccard,
    numbers_equal,
    short_answer,
)


@pytest.mark.parametrize("text, expected", [
    ("3 boxes of 4 is 12.\n#### 12", "12"),
    ("so 5 * 2 = 10 dollars. The answer is 10.", "10"),
    ("We get \\boxed{42} in the end, not 7", "42"),
    ("First 20 - 7 = 13, then 13 + 1 = 14", "14"),
    ("It costs $1,250.", "1250"),
    ("The answer is: -3.5 degrees", "-3.5"),
    ("#### 12\nbut later someone wrote 99", "12"),  # an explicit mark beats the last number
    ("half is 1/2", "0.5"),
])
def test_final_number(text, expected):
    assert format_number(final_number(text)) == expected


def test_final_number_absent_and_wrong():
    assert final_number("no digits here") is None
    assert not numbers_equal(format_number(final_number("the answer is 13")), "12")
    assert numbers_equal("12.0", "12") and numbers_equal("$1,000", "1000")
    assert final_number("1/3") == Fraction(1, 3) and format_number(Fraction(1, 3)) == "1/3"


def test_code_blocks_and_extract():
    text = "Here:\n```python\ndef f():\n    return 1\n```\nand\n```\nx = 2\n```"
    assert code_blocks(text) == ["def f():\n    return 1", "x = 2"]
    assert extract_code("no fence\n") == "no fence"
    assert extract_code("```py\nprint(1)\n") == "print(1)"  # unclosed fence at the end counts


def test_short_answer_and_similarity():
    assert short_answer("Let me think.\nThe answer is Thursday.") == "thursday"
    assert short_answer("2, 4, 8, 16 so next is 32") == "32"
    assert jaccard(char_ngrams("the cat sat"), char_ngrams("the cat sat")) == 1.0
    assert jaccard(char_ngrams("the cat sat"), char_ngrams("zebra quokka")) < 0.1
