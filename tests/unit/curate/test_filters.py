"""Rule filters with the student's real tokenizer and the packaged language model."""

from __future__ import annotations

import pytest

from cogumi.config_base import ModelConfig
from cogumi.curate import language
from cogumi.curate.config import FilterConfig
from cogumi.curate.filters import FilterStep, format_problem, token_counter
from cogumi.curate.rows import FILTERED, OK, new_row


@pytest.fixture(scope="module")
def count_tokens():
    return token_counter(ModelConfig())


def row(instruction="Explain why the sky is blue.", response="Sunlight scatters off air molecules, and blue "
        "light scatters most because of its short wavelength, so the sky looks blue.", **kw):
    return new_row(id="r", instruction=instruction, response=response, **({"finish_reason": "stop"} | kw))


def test_student_tokenizer_counts(count_tokens):
    assert count_tokens("Hello world") == 2
    assert count_tokens("") == 0


@pytest.mark.parametrize("response,problem", [
    ("", "empty response"),
    ("<|im_start|>assistant\nhi", "chat-template tokens"),
    ("Explain why the sky is blue.", "repeats the instruction"),
    ("```python\nprint(1)\n", "unbalanced code fence"),
    ("Bad \ufffd bytes", "undecodable"),
])
def test_format_problems(response, problem):
    assert problem in format_problem(row(response=response), drop_truncated=True)


def test_truncation_is_configurable():
    r = row(finish_reason="length")
    assert "truncated" in format_problem(r, True) and format_problem(r, False) is None


def test_language_detector_and_code_stripping():
    assert language.detect("The quick brown fox jumps over the lazy dog near the river bank.")[0] == "en"
    assert language.detect("Der schnelle braune Fuchs springt über den faulen Hund am Fluss.")[0] == "de"
    assert language.detect("```python\nx = 1\n```") == ("unknown", 0.0)
    lang, prob = language.detect("Here is the fix:\n```js\nconst x = obtenerDatos();\n```\nIt works now, enjoy.")
    assert lang == "en" and prob > 0.5


def test_filter_step_keeps_redacts_and_drops(count_tokens):
    step = FilterStep(FilterConfig(min_tokens=5, max_tokens=80), count_tokens)
    kept = step.one(row())
    assert kept["status"] == OK and kept["language"] == "en" and 5 <= kept["tokens"] <= 80
    redacted = step.one(row(response="Email the answer to jane@example.com and she will explain why the sky "
                                     "looks blue during the day."))
    assert redacted["status"] == OK and "[EMAIL]" in redacted["response"] and redacted["pii"] == "EMAIL"
    german = step.one(row(instruction="Warum ist der Himmel blau?", response="Das Sonnenlicht wird an den "
                          "Molekülen der Luft gestreut, und blaues Licht wird am stärksten gestreut."))
    assert german["status"] == FILTERED and german["reason"].startswith("language: de")
    long = step.one(row(response="The sky looks blue because air scatters blue light. " * 20))
    assert long["status"] == FILTERED and "tokens > 80" in long["reason"]
    short = FilterStep(FilterConfig(min_tokens=150), count_tokens).one(row())
    assert short["status"] == FILTERED and "< 150" in short["reason"]
    dropped = FilterStep(FilterConfig(min_tokens=1, pii="drop"), count_tokens).one(
        row(response="Call me on 415-555-0132 and I will explain why the sky looks blue."))
    assert dropped["status"] == FILTERED and dropped["reason"] == "pii: PHONE"
    errored = new_row(id="x", status="error", reason="teacher failed")
    assert step.one(errored) is errored
