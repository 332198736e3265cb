"""The student for training: NF4 (QLoRA) or bf16/fp32 base, LoRA on top, and what really runs.

Each decision that depends on the machine (precision, optimizer, attention kernel,
how packed samples are kept apart) is returned as text for the manifest, so a run
on a CPU says it ran ``adamw_8bit`` rather than claiming the spec's paged optimizer.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from cogumi.errors import CogumiError, ModelLoadError
from cogumi.train.config import TrainConfig


def load_training_tokenizer(location: str) -> Any:
    """The student's tokenizer with its end-of-sequence token matching the model's.

    Some checkpoints (the GGUF-materialised SmolLM2 among them) ship a tokenizer whose
    ``eos_token`` differs from the model's generation ``eos_token_id``; trainers then
    rewrite the model config to the tokenizer's value and generation stops on the
    wrong token. The model's own end-of-turn token wins here.
    """
    from transformers import GenerationConfig

    from cogumi.models.loading import load_tokenizer

    tok = load_tokenizer(location)
    try:
        eos = GenerationConfig.from_pretrained(location).eos_token_id
    except (OSError, ValueError):
        eos = getattr(_config_without_gguf(location), "eos_token_id", None)
    eos = eos[0] if isinstance(eos, list) and eos else eos
    if isinstance(eos, int) and eos != tok.eos_token_id and eos < len(tok):
        old = tok.eos_token
        tok.eos_token = tok.convert_ids_to_tokens(eos)
        if tok.pad_token is None or tok.pad_token == old:
            tok.pad_token = tok.eos_token
    return tok


def compute_dtype(cfg: TrainConfig, device: str) -> Any:
    """bf16 on CUDA (spec), fp32 on CPU unless the config forces one."""
    import torch

    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.startswith("cuda")):
        return torch.bfloat16
    return torch.float32


def choose_optimizer(cfg: TrainConfig, device: str) -> tuple[str, str]:
    """The HF optimizer name to use and a note of what really runs on ``device``.

    ``auto``: paged 8-bit AdamW on CUDA (spec), bitsandbytes 8-bit AdamW elsewhere
    when it imports (it runs non-paged on CPU), else ``adamw_torch``.
    """
    have_bnb = importlib.util.find_spec("bitsandbytes") is not None
    cuda = device.startswith("cuda")
    want = cfg.optimizer
    if want == "auto":
        want = "paged_adamw_8bit" if cuda else "adamw_8bit"
    if want in ("paged_adamw_8bit", "adamw_8bit") and not have_bnb:
        return "adamw_torch", f"adamw_torch ({want} needs bitsandbytes, not installed)"
    if want == "paged_adamw_8bit" and not cuda:
        return "adamw_8bit", "adamw_8bit (bitsandbytes; paged optimizers need CUDA)"
    return want, want


def attention_impl(device: str) -> tuple[str, str]:
    """The attention kernel and how packed samples are kept from attending to each other."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2", "bfd packing; flash-attention varlen (cu_seq_lens from position_ids)"
    return "sdpa", "bfd packing; restarted position_ids -> block-diagonal causal mask (sdpa, no KV cache)"


def _config_without_gguf(location: str) -> Any:
    """The model config, minus a GGUF ``quantization_config`` left by materialising a GGUF checkpoint."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(location)
    qc = getattr(config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if str(method).lower().endswith("gguf"):
        del config.quantization_config
    return config


def load_base(location: str, *, qlora: bool, device: str, dtype: Any) -> Any:
    """The frozen base model, 4-bit NF4 with double quantisation or plain, on ``device``.

    Args:
        location: HF folder or hub id.
        qlora: load NF4 through bitsandbytes.
        device: this rank's device (``cpu``, ``cuda:0`` ...); the 4-bit weights are placed there.
        dtype: compute dtype (bf16 on CUDA).
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    impl, _ = attention_impl(device)
    kwargs: dict[str, Any] = {"dtype": dtype, "config": _config_without_gguf(location), "attn_implementation": impl}
    if qlora:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise CogumiError("qlora: true needs bitsandbytes, which is not installed", "train.qlora",
                              "pip install bitsandbytes, or set train.qlora=false for plain LoRA")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the student from {location} ({str(exc).splitlines()[0][:200]})",
                             location, "check student.model; it must be an HF causal LM") from None
    if not qlora:
        model = model.to(device)  # type: ignore[arg-type]  # transformers types the wrapped .to() as unbound
    elif device == "cpu":
        keep_4bit_trainable_on_cpu(model)
    model.config.use_cache = False
    return model


def keep_4bit_trainable_on_cpu(model: Any) -> int:
    """Stop bitsandbytes repacking NF4 weights for CPU inference during evaluation.

    bitsandbytes 0.50 converts a ``Linear4bit`` to an AVX512-BF16 inference layout
    the first time it runs in eval mode without gradients (our validation and
    generations), and that layout's kernel has no backward: every later step then
    gets zero gradients through the frozen base, silently (checked: layer-0 LoRA
    gradients 0.0 instead of ~7.5e-3). Training keeps the trainable layout.

    Returns:
        How many 4-bit layers were pinned.
    """
    import bitsandbytes as bnb

    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def attach_lora(model: Any, cfg: TrainConfig, init_adapter: str | None = None) -> Any:
    """Prepare for k-bit training and add trainable LoRA weights (or continue ``init_adapter``).

    Returns:
        A ``peft.PeftModel`` whose only trainable parameters are the LoRA matrices.
    """
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    gc_kwargs = {"use_reentrant": False}
    if cfg.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=gc_kwargs)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
        model.enable_input_require_grads()
    if init_adapter:
        if not (Path(init_adapter) / "adapter_config.json").is_file():
            raise ModelLoadError(f"{init_adapter} is not a PEFT adapter folder (no adapter_config.json)",
                                 "train.init_adapter", "point it at the adapter/ folder of the Phase 1A stage")
        return PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in cfg.lora.target_modules if m not in present]
    if missing:
        raise CogumiError(f"LoRA target module(s) {missing} do not exist in this model", "train.lora.target_modules",
                          "use module names of the student (Llama-style: q_proj ... down_proj)")
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def adapter_rank(adapter_dir: str) -> dict[str, Any]:
    """r, alpha and targets of a saved adapter (for the manifest of a Phase 1B run)."""
    data = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    return {"r": data.get("r"), "alpha": data.get("lora_alpha"), "target_modules": data.get("target_modules")}


def merge_adapter(base: str, adapter_dir: str, out_dir: str, *, qlora: bool, device: str = "cpu") -> dict[str, str]:
    """Write base + adapter merged into one bf16 safetensors checkpoint.

    With ``qlora`` the base is loaded in NF4 as during training and dequantised
    before merging, so the merged weights are the ones the adapter was trained on.

    Returns:
        What ran, for the manifest.
    """
    import torch
    from peft import PeftModel

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = load_base(base, qlora=qlora, device=device, dtype=dtype)
    method = "bf16 base + adapter, merge_and_unload"
    if qlora:
        model = model.dequantize()
        method = "NF4 base dequantised, + adapter, merge_and_unload"
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged = merged.to(torch.bfloat16)
    merged.config.use_cache = True
    merged.save_pretrained(out_dir, safe_serialization=True)
    load_training_tokenizer(base).save_pretrained(out_dir)
    return {"merge": method + " -> bf16 safetensors"}
