"""Language identification for the English-only filter, with py3langid.

Chosen after ``benchmarks/curate_langid.py`` compared the detectors whose model
ships inside their package: py3langid (a maintained langid.py: naive Bayes over
byte n-grams, 4.5 MB, numpy), langdetect (the spec's choice: a Java port, random
unless seeded, about 4x slower) and lingua (most accurate on very short text, but
a 96 MB install and seconds to load). On instruction/response text, which is
rarely shorter than a sentence, py3langid was as accurate as the others, was the
fastest, and is deterministic. Code blocks, inline code and URLs are removed
before detection so that code answers are judged by their prose.
"""

from __future__ import annotations

import re
import threading

_CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.S)
_INLINE = re.compile(r"`[^`\n]*`|https?://\S+|\S+@\S+")
_MIN_LETTERS = 12

_lock = threading.Lock()
_identifier = None


def _get():
    global _identifier
    with _lock:
        if _identifier is None:
            import py3langid.langid as langid

            _identifier = langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE,
                                                                   norm_probs=True)
        return _identifier


def prose(text: str) -> str:
    """The text with code blocks, inline code, URLs and emails removed."""
    return _INLINE.sub(" ", _CODE_BLOCK.sub(" ", text))


def detect(text: str) -> tuple[str, float]:
    """Language of the prose in ``text``.

    Returns:
        ``(ISO 639-1 code, probability)``, or ``("unknown", 0.0)`` when there is
        too little prose to decide (such rows pass the language filter).
    """
    body = prose(text)
    if sum(ch.isalpha() for ch in body) < _MIN_LETTERS:
        return "unknown", 0.0
    lang, prob = _get().classify(body)
    return str(lang), float(prob)
