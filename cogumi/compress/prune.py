"""Step 1: SparseGPT pruning (2:4 or unstructured) through llmcompressor's ``oneshot``.

llmcompressor writes the pruned model dense (zeros stored as zeros, same size as
the input) and no current serving stack has 2:4 kernels for it, so this step
claims no speed-up or size reduction; its value is what the later steps can do
with the zeros. :func:`sparsity_stats` measures what the saved weights really hold.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from cogumi.compress.config import CalibrationConfig, PruneConfig

log = logging.getLogger(__name__)

ATTENTION_TARGET = "re:.*self_attn$"
MLP_TARGET = "re:.*mlp$"


@contextlib.contextmanager
def quiet_llmcompressor() -> Any:
    """Keep llmcompressor's per-module INFO lines (hundreds per model) out of the log."""
    from loguru import logger

    logger.disable("llmcompressor")
    try:
        yield
    finally:
        logger.enable("llmcompressor")


def sparsegpt_recipe(cfg: PruneConfig) -> list[Any]:
    """SparseGPT modifiers: one per module group (attention / MLP) so each gets its own sparsity."""
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier

    mask = cfg.mask if cfg.nm else "0:0"
    common: dict[str, Any] = {"mask_structure": mask, "dampening_frac": cfg.dampening_frac, "block_size": cfg.block_size,
              "ignore": list(cfg.ignore)}
    if cfg.attention_sparsity == cfg.mlp_sparsity:
        return [SparseGPTModifier(sparsity=cfg.attention_sparsity, targets=[ATTENTION_TARGET, MLP_TARGET], **common)]
    return [SparseGPTModifier(sparsity=cfg.attention_sparsity, targets=[ATTENTION_TARGET], **common),
            SparseGPTModifier(sparsity=cfg.mlp_sparsity, targets=[MLP_TARGET], **common)]


def prune_model(src: Path, out: Path, cfg: PruneConfig, dataset: Any, calib: CalibrationConfig) -> dict[str, Any]:
    """Prune the HF model in ``src`` with SparseGPT and save it (dense) to ``out``.

    Args:
        src: HF checkpoint (float weights).
        out: output folder (model, tokenizer, llmcompressor recipe).
        cfg: mask and per-group sparsity.
        dataset: tokenised calibration set.
        calib: calibration settings (sequence length).

    Returns:
        Sparsity measured on the saved weights (see :func:`sparsity_stats`).
    """
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    with quiet_llmcompressor():
        oneshot(model=model, recipe=sparsegpt_recipe(cfg), dataset=dataset, num_calibration_samples=len(dataset),
                max_seq_length=calib.max_seq_length, output_dir=str(out))
    return sparsity_stats(model, cfg.nm)


def sparsity_stats(model: Any, nm: tuple[int, int] | None) -> dict[str, Any]:
    """Zeros in every decoder Linear weight, and how many M-blocks keep the N:M pattern.

    Args:
        model: a model with dense float weights (pruned, or a decompressed 4-bit model).
        nm: the mask's (N, M), or None for unstructured pruning.

    Returns:
        ``{"sparsity": overall zero fraction, "attention": ..., "mlp": ..., "nm_blocks_kept": fraction
        of M-weight blocks with at least N zeros (None when unstructured), "modules": count}``.
    """
    import torch

    zeros = {"attention": [0, 0], "mlp": [0, 0]}
    blocks_ok, blocks = 0, 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or "layers." not in name:
            continue
        w = module.weight.detach()
        group = "attention" if ".self_attn." in name else "mlp"
        zeros[group][0] += int((w == 0).sum())
        zeros[group][1] += w.numel()
        if nm and w.shape[1] % nm[1] == 0:
            z = (w.reshape(w.shape[0], -1, nm[1]) == 0).sum(-1)
            blocks_ok += int((z >= nm[0]).sum())
            blocks += z.numel()
    total_zero = zeros["attention"][0] + zeros["mlp"][0]
    total = zeros["attention"][1] + zeros["mlp"][1]
    return {
        "sparsity": round(total_zero / max(total, 1), 4),
        "attention_sparsity": round(zeros["attention"][0] / max(zeros["attention"][1], 1), 4),
        "mlp_sparsity": round(zeros["mlp"][0] / max(zeros["mlp"][1], 1), 4),
        "nm_blocks_kept": round(blocks_ok / blocks, 4) if blocks else None,
    }
