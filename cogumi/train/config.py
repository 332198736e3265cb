"""Phase 1A/1B training settings."""

from __future__ import annotations

from pydantic import Field

from cogumi.config_base import Section


class LoraConfig(Section):
    """LoRA adapter shape (spec: r=64, alpha=16, dropout 0.05 on all 7 projections)."""

    r: int = Field(64, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class TrainConfig(Section):
    """Phase 1A/1B: QLoRA SFT on Ray Train."""

    qlora: bool = True
    lora: LoraConfig = Field(default_factory=LoraConfig)
    learning_rate: float = Field(2e-4, gt=0.0)
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1)
    max_seq_length: int = Field(2048, ge=32)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(8, ge=1)
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    packing: bool = True
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
