"""Rule filters on generated examples: format, language, PII, token length. Each drop says why.

Order: cheap structural checks first, then language, PII (redacted or dropped)
and finally the token length with the student's tokenizer (after redaction,
since placeholders change the length).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cogumi.config_base import ModelConfig
from cogumi.curate import language, pii
from cogumi.curate.config import FilterConfig
from cogumi.curate.rows import FILTERED, is_ok, mark

_TEMPLATE_TOKENS = re.compile(r"<\|(?:im_start|im_end|endoftext|eot_id|start_header_id|end_header_id)\|>")


def token_counter(model: ModelConfig) -> Callable[[str], int]:
    """A function counting tokens with the student's tokenizer.

    GGUF students (the embedded default) load only llama.cpp's vocabulary; HF
    students load their tokenizer.
    """
    from cogumi.models.loading import load_tokenizer, resolve_source

    src = resolve_source(model)
    if src.kind == "gguf":
        from llama_cpp import Llama

        from cogumi.models.inference.llamacpp_backend import _extra_buffers, _extra_buffers_safe, _quiet

        with _quiet(), _extra_buffers(_extra_buffers_safe()):
            vocab = Llama(model_path=src.location, vocab_only=True, verbose=False)
        return lambda text: len(vocab.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=False))
    tok = load_tokenizer(src.location, src.gguf_file)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def format_problem(row: dict[str, Any], drop_truncated: bool) -> str | None:
    """Why the example is not a valid instruction/response pair (None = valid)."""
    response = row.get("response")
    if not isinstance(response, str) or not response.strip():
        return "format: empty response"
    if not isinstance(row.get("instruction"), str) or not row["instruction"].strip():
        return "format: empty instruction"
    if _TEMPLATE_TOKENS.search(response):
        return "format: chat-template tokens in the response"
    if response.strip() == row["instruction"].strip():
        return "format: response repeats the instruction"
    if "\ufffd" in response:
        return "format: response has undecodable characters"
    if response.count("```") % 2:
        return "format: unbalanced code fence"
    if drop_truncated and row.get("finish_reason") == "length":
        return "format: response truncated at max_tokens"
    return None


class FilterStep:
    """Apply the rule filters to a batch of rows.

    Args:
        cfg: filter settings.
        count_tokens: token counter of the student (see :func:`token_counter`).
    """

    def __init__(self, cfg: FilterConfig, count_tokens: Callable[[str], int]):
        self.cfg, self.count_tokens = cfg, count_tokens

    def one(self, row: dict[str, Any]) -> dict[str, Any]:
        if not is_ok(row):
            return row
        cfg = self.cfg
        if problem := format_problem(row, cfg.drop_truncated):
            return mark(row, FILTERED, "filter", problem)
        if cfg.language:
            lang, prob = language.detect(f"{row['instruction']}\n{row['response']}")
            row["language"], row["language_prob"] = lang, prob
            if lang != "unknown" and (lang != cfg.language or prob < cfg.min_language_confidence):
                return mark(row, FILTERED, "filter", f"language: {lang} ({prob:.2f}), not {cfg.language}")
        if cfg.pii != "off":
            instruction, kinds_i = pii.redact(row["instruction"])
            response, kinds_r = pii.redact(row["response"])
            kinds = sorted(set(kinds_i) | set(kinds_r))
            if kinds:
                row["pii"] = ",".join(kinds)
                if cfg.pii == "drop":
                    return mark(row, FILTERED, "filter", f"pii: {row['pii']}")
                row["instruction"], row["response"] = instruction, response
        row["tokens"] = self.count_tokens(row["instruction"]) + self.count_tokens(row["response"])
        if row["tokens"] < cfg.min_tokens:
            return mark(row, FILTERED, "filter", f"length: {row['tokens']} tokens < {cfg.min_tokens}")
        if row["tokens"] > cfg.max_tokens:
            return mark(row, FILTERED, "filter", f"length: {row['tokens']} tokens > {cfg.max_tokens}")
        return row

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.one(r) for r in rows]
