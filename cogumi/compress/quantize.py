"""Step 2: 4-bit weight quantisation (W4A16) with AWQ or GPTQ through llmcompressor.

Output is a compressed-tensors checkpoint (``pack-quantized`` int4 with group
scales) that transformers and vLLM load. AWQ in llmcompressor 0.14 is a smoothing
transform (``AWQModifier``) followed by round-to-nearest quantisation; during its
grid search it pins cached activations in page-locked host memory, which needs an
accelerator and raises on a CPU-only machine. Pinning only makes later
host-to-device copies faster; with no device the tensors never move, so skipping
it changes no number. :func:`cpu_awq` skips it, scoped to the AWQ call.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from cogumi.compress.config import CalibrationConfig, QuantizeConfig
from cogumi.compress.errors import CompressError
from cogumi.compress.prune import quiet_llmcompressor

log = logging.getLogger(__name__)


def has_accelerator() -> bool:
    """Whether torch sees an accelerator (CUDA, MPS, XPU...)."""
    import torch

    accel = getattr(torch, "accelerator", None)
    return bool(accel.is_available()) if accel is not None else torch.cuda.is_available()


@contextlib.contextmanager
def cpu_awq() -> Any:
    """Let llmcompressor's AWQ run without an accelerator: cache pinning becomes a no-op.

    Only active when no accelerator exists; the original method is restored on exit.
    """
    if has_accelerator():
        yield
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.pin_memory

    def no_pin(self: Any, batch_index: int, input_names: list[str] | None = None) -> None:
        return None

    IntermediatesCache.pin_memory = no_pin  # type: ignore[method-assign]  # CPU has no pinned memory
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]


def choose_method(cfg: QuantizeConfig) -> tuple[str, str]:
    """(method that will run, description for the manifest and log)."""
    if cfg.method == "gptq":
        return "gptq", "gptq (llmcompressor GPTQModifier, W4A16)"
    if has_accelerator():
        return "awq", "awq (llmcompressor AWQModifier + W4A16, on the accelerator)"
    if cfg.cpu_awq == "gptq":
        return "gptq", "gptq (awq asked for, but no accelerator and quantize.cpu_awq is gptq)"
    return "awq", "awq (llmcompressor AWQModifier + W4A16 on CPU; activation-cache pinning skipped, no accelerator)"


def check_group_size(model_dir: Path, cfg: QuantizeConfig) -> None:
    """Every quantised Linear's input size must be a multiple of the group size.

    Raises:
        CompressError: names the first layer that does not fit and the sizes that would.
    """
    import json

    hp = json.loads((model_dir / "config.json").read_text())
    sizes = {"hidden_size": int(hp["hidden_size"]), "intermediate_size": int(hp["intermediate_size"])}
    n_head = int(hp["num_attention_heads"])
    sizes["attention output"] = n_head * int(hp.get("head_dim") or hp["hidden_size"] // n_head)
    bad = {k: v for k, v in sizes.items() if v % cfg.group_size}
    if bad:
        fits = [g for g in (256, 128, 64, 32, 16) if all(v % g == 0 for v in sizes.values())]
        raise CompressError(f"group size {cfg.group_size} does not divide {bad}", f"compress quantize: {model_dir}",
                            f"set compress.quantize.group_size to one of {fits or 'a common divisor'}")


def w4a16_recipe(cfg: QuantizeConfig, method: str) -> list[Any]:
    """llmcompressor modifiers for W4A16 with the configured group size."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    symmetric = cfg.symmetric if cfg.symmetric is not None else method == "gptq"
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(
        num_bits=4, type="int", symmetric=symmetric, strategy="group", group_size=cfg.group_size))
    if method == "gptq":
        from llmcompressor.modifiers.quantization import GPTQModifier

        return [GPTQModifier(config_groups={"group_0": scheme}, ignore=list(cfg.ignore))]
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    return [AWQModifier(n_grid=cfg.awq_grid), QuantizationModifier(config_groups={"group_0": scheme}, ignore=list(cfg.ignore))]


def quantize_model(src: Path, out: Path, cfg: QuantizeConfig, dataset: Any,
                   calib: CalibrationConfig) -> dict[str, Any]:
    """Quantise ``src`` to W4A16 and save compressed-tensors weights to ``out``.

    Returns:
        ``{"method": awq|gptq, "method_note": what ran and why, "symmetric": bool}``.

    Raises:
        CompressError: the group size does not fit the model.
    """
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM

    check_group_size(src, cfg)
    method, note = choose_method(cfg)
    log.info("quantize: %s", note)
    dtype = torch.bfloat16 if has_accelerator() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
    guard = cpu_awq() if method == "awq" else contextlib.nullcontext()
    with guard, quiet_llmcompressor():
        oneshot(model=model, recipe=w4a16_recipe(cfg, method), dataset=dataset,
                num_calibration_samples=len(dataset), max_seq_length=calib.max_seq_length, output_dir=str(out))
    symmetric = cfg.symmetric if cfg.symmetric is not None else method == "gptq"
    return {"method": method, "method_note": note, "symmetric": symmetric, "group_size": cfg.group_size}
