"""DeepSpeed settings for multi-GPU LoRA: ZeRO-2 is offered, ZeRO-3 with a 4-bit base is refused.

ZeRO-2 shards optimizer states and gradients (the LoRA matrices) across ranks and
leaves each rank its own replica of the frozen 4-bit base, which bitsandbytes
needs. ZeRO-3 would also shard the base parameters, which bitsandbytes NF4
weights do not support here, so that combination is a configuration error.

``deepspeed`` is an optional extra (``pip install 'cogumi[gpu]'``); nothing here
imports it unless a run asks for it.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from cogumi.errors import CogumiError
from cogumi.train.config import TrainConfig


def deepspeed_config(cfg: TrainConfig) -> dict[str, Any] | None:
    """The HF ``TrainingArguments(deepspeed=...)`` dict for ``cfg.deepspeed`` (None when off).

    Values marked ``auto`` are filled by transformers from the training arguments,
    so batch size, accumulation, clipping and precision stay defined in one place.

    Raises:
        CogumiError: ZeRO-3 with ``qlora: true``.
    """
    if cfg.deepspeed == "none":
        return None
    if cfg.deepspeed == "zero3" and cfg.qlora:
        raise CogumiError("DeepSpeed ZeRO-3 cannot be combined with a 4-bit (NF4) base model", "train.deepspeed",
                          "use deepspeed: zero2 for multi-GPU QLoRA, or qlora: false to shard a bf16 base with ZeRO-3")
    stage = 2 if cfg.deepspeed == "zero2" else 3
    return {
        "zero_optimization": {"stage": stage, "overlap_comm": True, "contiguous_gradients": True,
                              "reduce_scatter": True, "reduce_bucket_size": "auto",
                              "allgather_bucket_size": 200_000_000},
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        # the bitsandbytes 8-bit AdamW is a client optimizer DeepSpeed has not certified
        "zero_allow_untested_optimizer": True,
    }


def check_deepspeed_available(cfg: TrainConfig) -> None:
    """Fail before launching workers when a DeepSpeed run lacks the package or GPUs.

    Raises:
        CogumiError: deepspeed is requested but not installed, or requested on CPU.
    """
    if cfg.deepspeed == "none":
        return
    deepspeed_config(cfg)  # the ZeRO-3 + 4-bit refusal
    if not cfg.use_gpu:
        raise CogumiError(f"deepspeed: {cfg.deepspeed} needs GPU workers", "train.deepspeed",
                          "set train.use_gpu=true on a GPU cluster, or deepspeed: none")
    if importlib.util.find_spec("deepspeed") is None:
        raise CogumiError(f"deepspeed: {cfg.deepspeed} was requested but DeepSpeed is not installed",
                          "train.deepspeed", "pip install 'cogumi[gpu]' on the GPU nodes, or set deepspeed: none")
