"""Sliding-window perplexity on held-out text, and fixed-prompt generation samples.

Perplexity needs the model's own logits, so it runs the HF weights (the embedded
GGUF is materialised to HF; a PEFT adapter is applied). Each token is scored once, with up to ``max_length - stride``
tokens of earlier context carried over from the previous window (the transformers
perplexity recipe; with ``stride == max_length`` a window's first token has no
context and is not scored).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from cogumi.config_base import ModelConfig
from cogumi.errors import CogumiError
from cogumi.evaluate.config import PerplexityConfig
from cogumi.jsonl import read_jsonl
from cogumi.models.inference import InferenceBackend, SamplingParams


def bundled_text() -> str:
    """The project's held-out paragraphs."""
    return (resources.files("cogumi.evaluate") / "data" / "heldout.txt").read_text()


def read_text(path: str | None) -> str:
    """Held-out text from ``path`` or the bundled file."""
    if path is None:
        return bundled_text()
    p = Path(path)
    if not p.is_file():
        raise CogumiError(f"held-out text {p} does not exist", "evaluate.benchmark.perplexity.text_path",
                          "point it at a UTF-8 text file")
    return p.read_text()


def sliding_window_nll(model: Any, input_ids: Any, max_length: int, stride: int) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) and number of scored tokens.

    Args:
        model: a causal LM returning ``.logits``.
        input_ids: tensor of shape (1, n).
        max_length: window length.
        stride: how far each window moves; tokens before ``prev_end`` are context only.
    """
    import torch

    if stride > max_length:
        raise CogumiError(f"stride {stride} exceeds window {max_length}", "evaluate.benchmark.perplexity",
                          "use a stride no larger than max_length")
    n = input_ids.shape[1]
    total, count, prev_end = 0.0, 0, 0
    device = next(model.parameters()).device
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        window = input_ids[:, begin:end].to(device)
        with torch.inference_mode():
            logits = model(window).logits.float()
        logp = torch.log_softmax(logits[0, :-1], dim=-1)
        targets = window[0, 1:]
        first = max(prev_end, begin + 1) - begin  # first position (in window) whose token is new
        nll = -logp[first - 1:].gather(1, targets[first - 1:, None]).squeeze(1)
        total += float(nll.sum())
        count += int(nll.numel())
        prev_end = end
        if end == n:
            break
    return total, count


def perplexity(model_cfg: ModelConfig, pcfg: PerplexityConfig) -> dict[str, Any]:
    """Perplexity of the student on the held-out text.

    Returns:
        ``{"perplexity", "nll_per_token", "tokens", "windows": {...}, "method"}`` or
        ``{"skipped": reason}`` for endpoints (no access to logits).
    """
    if model_cfg.backend == "openai":
        return {"skipped": "an OpenAI-compatible endpoint gives no prompt logprobs; perplexity needs local weights"}
    from cogumi.models.loading import hf_checkpoint, load_causal_lm, load_tokenizer, resolve_source
    from cogumi.models.resources import resolve_device

    if model_cfg.adapter and model_cfg.adapter.endswith(".gguf"):
        raise CogumiError("perplexity runs HF weights and cannot apply a GGUF LoRA adapter", "student.adapter",
                          "point adapter at the PEFT adapter folder written by training")
    src = resolve_source(model_cfg)
    location = hf_checkpoint(model_cfg)
    gguf_file = model_cfg.gguf_file if src.kind != "gguf" else None
    device = resolve_device(model_cfg.device)
    tokenizer = load_tokenizer(location, gguf_file)
    model = load_causal_lm(location, device=device, dtype=model_cfg.dtype, gguf_file=gguf_file,
                           adapter=model_cfg.adapter)
    ids = tokenizer(read_text(pcfg.text_path), return_tensors="pt").input_ids
    if pcfg.max_tokens:
        ids = ids[:, :pcfg.max_tokens]
    if ids.shape[1] < 2:
        raise CogumiError("the held-out text has fewer than two tokens", "evaluate.benchmark.perplexity.text_path",
                          "use a longer text")
    nll, count = sliding_window_nll(model, ids, pcfg.max_length, min(pcfg.stride, pcfg.max_length))
    how = f"HF sliding window on {device}" + (" (GGUF dequantised to HF)" if src.kind == "gguf" else "")
    return {"perplexity": math.exp(nll / count), "nll_per_token": nll / count, "tokens": count,
            "window": pcfg.max_length, "stride": pcfg.stride,
            "method": how + (" + adapter" if model_cfg.adapter else "")}


def read_prompts(path: str | None) -> list[str]:
    """Fixed generation prompts (JSONL of ``{"prompt"}``; default: the bundled ones)."""
    source = Path(path) if path else resources.files("cogumi.evaluate") / "data" / "generation_prompts.jsonl"
    try:
        rows = read_jsonl(source)
        return [str(r["prompt"]) for r in rows]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CogumiError(f"cannot read generation prompts ({exc.__class__.__name__}: {exc})", str(source),
                          "use a JSONL file with one {\"prompt\": ...} object per line") from None


def generations(backend: InferenceBackend, prompts: list[str], max_tokens: int) -> list[dict[str, Any]]:
    """Greedy answers to fixed prompts, for reading side by side across runs."""
    out = []
    for prompt in prompts:
        try:
            gen = backend.chat([{"role": "user", "content": prompt}], SamplingParams(max_tokens=max_tokens))
            out.append({"prompt": prompt, "text": gen.text, "tokens": gen.usage.completion_tokens,
                        "tokens_per_s": round(gen.tokens_per_s, 2), "finish_reason": gen.finish_reason})
        except Exception as exc:  # noqa: BLE001 - one failed prompt is reported, not fatal
            out.append({"prompt": prompt, "error": f"{exc.__class__.__name__}: {str(exc)[:200]}"})
    return out
