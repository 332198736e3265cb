"""Perplexity on held-out text (transformers or llama.cpp) and the per-step quality gate.

Both scorers see the same token ids (from the HF tokenizer), cut into the same
windows, so a GGUF's perplexity is comparable with the HF model's: the tokenizer
itself is checked separately by the GGUF round trip.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cogumi.compress.config import QualityConfig
from cogumi.compress.errors import QualityGateError

log = logging.getLogger(__name__)


def token_windows(texts: list[str], tokenizer: Any, max_tokens: int, window: int) -> list[list[int]]:
    """Held-out texts as token windows: texts joined with EOS, cut to ``max_tokens``, split by ``window``."""
    ids: list[int] = []
    sep = tokenizer.eos_token_id
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=True)["input_ids"])
        if sep is not None:
            ids.append(sep)
        if len(ids) >= max_tokens:
            break
    ids = ids[:max_tokens]
    windows = [ids[i:i + window] for i in range(0, len(ids), window)]
    return [w for w in windows if len(w) > 1]


def _nll_from_logprobs(logprobs: np.ndarray, window: list[int]) -> float:
    return float(-logprobs[np.arange(len(window) - 1), window[1:]].sum())


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def hf_perplexity(model: Any, windows: list[list[int]]) -> float:
    """Perplexity of a transformers causal LM over token windows (each scored independently)."""
    import torch

    device = next(model.parameters()).device
    nll, count = 0.0, 0
    with torch.no_grad():
        for window in windows:
            logits = model(torch.tensor([window], device=device)).logits[0].float().cpu().numpy()
            nll += _nll_from_logprobs(log_softmax(logits), window)
            count += len(window) - 1
    return math.exp(nll / count)


def llamacpp_perplexity(gguf_path: str | Path, windows: list[list[int]], lora_path: str | None = None) -> float:
    """Perplexity of a GGUF under llama.cpp over the same token windows."""
    from cogumi.models.inference.llamacpp_backend import LlamaCppBackend

    n_ctx = max(len(w) for w in windows)
    backend = LlamaCppBackend(gguf_path, n_ctx=max(n_ctx, 128), logits_all=True, lora_path=lora_path)
    try:
        nll, count = 0.0, 0
        for window in windows:
            logits = llamacpp_logits(backend, window)
            nll += _nll_from_logprobs(log_softmax(logits), window)
            count += len(window) - 1
    finally:
        backend.close()
    return math.exp(nll / count)


def llamacpp_logits(backend: Any, ids: list[int]) -> np.ndarray:
    """Logits of every position of ``ids`` from a llama.cpp backend loaded with ``logits_all``."""
    llm = backend.llm
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


@dataclass
class GateResult:
    """One model's perplexity against the uncompressed baseline."""

    model: str
    ppl: float
    baseline_ppl: float
    increase: float
    limit: float
    status: str  # pass, rejected, warn or fail

    @property
    def usable(self) -> bool:
        """May later steps build on (and the pipeline serve) this artifact?"""
        return self.status in ("pass", "warn")

    def reason(self) -> str:
        """One line: the numbers behind the status."""
        return (f"perplexity {self.ppl:.3f} vs {self.baseline_ppl:.3f} at baseline ({100 * self.increase:+.1f}%, "
                f"limit +{100 * self.limit:.0f}%)")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (rounded)."""
        d = asdict(self)
        d.update(ppl=round(self.ppl, 4), baseline_ppl=round(self.baseline_ppl, 4), increase=round(self.increase, 5))
        return d


def gate(model: str, ppl: float, baseline_ppl: float, cfg: QualityConfig) -> GateResult:
    """Compare ``ppl`` with the baseline.

    ``status`` is ``pass`` within the limit; beyond it ``rejected`` (``on_fail: fallback``),
    ``fail`` or ``warn``.
    """
    increase = ppl / baseline_ppl - 1.0
    ok = increase <= cfg.max_ppl_increase and math.isfinite(ppl)
    status = "pass" if ok else {"fallback": "rejected", "fail": "fail", "warn": "warn"}[cfg.on_fail]
    result = GateResult(model, ppl, baseline_ppl, increase, cfg.max_ppl_increase, status)
    if status == "warn":
        log.warning("quality gate: %s perplexity %.3f is %+.1f%% vs baseline %.3f (limit %+.0f%%); kept "
                    "because quality.on_fail is warn", model, ppl, 100 * increase, baseline_ppl,
                    100 * cfg.max_ppl_increase)
    elif status == "rejected":
        log.warning("quality gate: %s rejected: %s", model, result.reason())
    return result


def enforce(results: list[GateResult], step: str, artifact: str) -> None:
    """Raise when any result failed the gate.

    Raises:
        QualityGateError: names the step, the model and the numbers.
    """
    failed = [r for r in results if r.status == "fail"]
    if failed:
        parts = "; ".join(f"{r.model}: perplexity {r.ppl:.3f} vs {r.baseline_ppl:.3f} ({100 * r.increase:+.1f}%)"
                          for r in failed)
        raise QualityGateError(
            f"quality gate failed after step '{step}': {parts}, beyond the +{100 * failed[0].limit:.0f}% limit",
            artifact, "relax compress.quality.max_ppl_increase, set compress.quality.on_fail=warn, give more "
                      "calibration data, or use a gentler setting for this step")
