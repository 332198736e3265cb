"""llama.cpp's side of GGUF files: integrity check, K-quant quantisation, round trip against HF.

Round-trip tolerance. The HF model runs in float32; llama.cpp runs the GGUF. We
compare next-token distributions at every position of a few prompts (teacher
forced on the same token ids) by the mean KL divergence KL(HF || llama.cpp) in
nats, plus top-1 agreement, and report greedy continuations side by side.

* f16: weights are rounded to 11 significant bits (relative error <= 2^-11) and
  llama.cpp's CPU matmuls take f16 activations, so logits move by ~1e-3 relative;
  measured on SmolLM2-135M: mean KL 1e-5 nats, top-1 agreement 100 %. Limit:
  mean KL <= 1e-3 and top-1 >= 95 %. A wrong q/k permutation, tensor mapping or
  rope setting gives KL of several nats and fails by orders of magnitude.
* K-quants (Q5_K_M, Q4_K_M): 4.5-6 bits per weight; measured on SmolLM2 (whose
  weights already came from a Q4_1 GGUF): mean KL 0.06-0.10 nats, top-1 90-92 %.
  Limit: mean KL <= 0.5 and top-1 >= 60 %: loose enough not to duplicate the
  perplexity gate (which judges quantisation quality), tight enough to catch a
  broken file. Limits live in ``compress.gguf`` (f16_max_kl, quant_max_kl, ...).
"""

from __future__ import annotations

import collections
import ctypes
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cogumi.compress.errors import GgufFileError
from cogumi.compress.quality import llamacpp_logits, log_softmax

log = logging.getLogger(__name__)

def verify_gguf(path: str | Path, step: str) -> dict[str, int]:
    """Parse a GGUF and make sure every tensor's data lies inside the file.

    Returns:
        Count of tensors per GGML type (e.g. ``{"Q5_K": 16, "Q5_1": 166, ...}``).

    Raises:
        GgufFileError: missing, not GGUF, truncated or otherwise unreadable.
    """
    from gguf import GGUFReader

    p = Path(path)
    where = f"compress {step}: {p}"
    if not p.is_file():
        raise GgufFileError(f"GGUF file {p} does not exist", where, "run the gguf step again")
    try:
        reader = GGUFReader(p)
        size = p.stat().st_size
        for t in reader.tensors:
            if int(t.data_offset) + int(t.n_bytes) > size:
                raise ValueError(f"tensor {t.name} ends past the end of the file")
    except Exception as exc:  # noqa: BLE001 - GGUFReader raises ValueError/IndexError/struct errors
        raise GgufFileError(f"{p} is truncated or corrupt ({exc})", where,
                            "delete it and run the gguf step again (cogumi compress --force)") from None
    return dict(collections.Counter(t.tensor_type.name for t in reader.tensors))


def quantize_gguf(src: str | Path, dst: str | Path, qtype: str, threads: int = 0) -> dict[str, int]:
    """Quantise an f16/f32 GGUF to ``qtype`` (e.g. ``Q5_K_M``) with llama.cpp's quantiser.

    Tensors whose rows are not a multiple of the 256-weight K-quant super-block get
    llama.cpp's fallback type (e.g. Q5_1); the returned type counts show what was used.

    Raises:
        GgufFileError: llama.cpp refused the input or failed.
    """
    import llama_cpp

    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}")
    params.nthread = threads
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0:
            raise GgufFileError(f"llama.cpp could not quantise {src} to {qtype} (status {rc})",
                                f"compress gguf: {src}", "check that the input is a complete f16/f32 GGUF")
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return verify_gguf(dst, "gguf")


@dataclass
class RoundTrip:
    """How closely llama.cpp running a GGUF follows the HF model."""

    file: str
    tokenizer_match: bool
    mean_kl: float
    max_kl: float
    top1_agreement: float
    greedy_hf: list[str] = field(default_factory=list)
    greedy_gguf: list[str] = field(default_factory=list)
    greedy_match: float = 0.0
    max_mean_kl: float = 0.0
    min_top1: float = 0.0
    passed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _hf_greedy(model: Any, ids: list[int], n: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()


def _gguf_greedy(backend: Any, ids: list[int], n: int) -> list[int]:
    llm = backend.llm
    llm.reset()
    out = []
    for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
        out.append(int(token))
        if len(out) >= n:
            break
    return out


def compare_with_hf(gguf_path: str | Path, hf_model: Any, tokenizer: Any, prompts: list[str], n_tokens: int,
                    max_mean_kl: float, min_top1: float, lora_path: str | None = None) -> RoundTrip:
    """Load ``gguf_path`` in llama.cpp and compare it with ``hf_model`` on ``prompts``.

    Args:
        gguf_path: the GGUF (loaded through :class:`LlamaCppBackend`, AMX-safe).
        hf_model: the transformers model it came from (float32, eval mode).
        tokenizer: the HF tokenizer.
        prompts: texts fed to both, as the same token ids.
        n_tokens: greedy tokens generated by each for the side-by-side comparison.
        max_mean_kl: limit on mean KL(HF || llama.cpp) in nats.
        min_top1: limit on the fraction of positions with the same arg-max.
        lora_path: a GGUF LoRA applied by llama.cpp (``hf_model`` then carries the PEFT adapter).

    Returns:
        The measurements; ``passed`` says whether they are within the limits and the tokenizers agree.
    """
    import torch

    from cogumi.models.inference.llamacpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(gguf_path, n_ctx=512, logits_all=True, lora_path=lora_path)
    try:
        kls, agree, tok_ok = [], [], True
        greedy_hf, greedy_gguf, matches = [], [], []
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
            tok_ok &= backend.llm.tokenize(prompt.encode(), add_bos=ids[:1] == [tokenizer.bos_token_id],
                                           special=True) == ids
            with torch.no_grad():
                ref = log_softmax(hf_model(torch.tensor([ids])).logits[0].float().numpy())
            got = log_softmax(llamacpp_logits(backend, ids))
            kls.append((np.exp(ref) * (ref - got)).sum(axis=-1))
            agree.append(ref.argmax(-1) == got.argmax(-1))
            a, b = _hf_greedy(hf_model, ids, n_tokens), _gguf_greedy(backend, ids, n_tokens)
            greedy_hf.append(tokenizer.decode(a))
            greedy_gguf.append(tokenizer.decode(b))
            same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            matches.append(same / max(n_tokens, 1))
    finally:
        backend.close()
    kl = np.concatenate(kls)
    top1 = float(np.concatenate(agree).mean())
    result = RoundTrip(Path(gguf_path).name, bool(tok_ok), float(kl.mean()), float(kl.max()), top1, greedy_hf,
                       greedy_gguf, float(np.mean(matches)), max_mean_kl, min_top1)
    result.passed = result.tokenizer_match and result.mean_kl <= max_mean_kl and top1 >= min_top1
    log.info("round trip %s: mean KL %.2e, top-1 %.1f%%, greedy prefix match %.0f%%, tokenizer %s",
             Path(gguf_path).name, result.mean_kl, 100 * top1, 100 * result.greedy_match,
             "ok" if tok_ok else "DIFFERS")
    return result
