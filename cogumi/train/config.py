"""Phase 1A/1B training settings (QLoRA SFT on Ray Train) and the Tune search over them.

Defaults follow the spec ("Phase 1A Configuration", "Monitoring & Risk Mitigation"):
LoRA r=64, α=16, dropout 0.05 on all 7 projections, NF4 + double quantisation with
bf16 compute, cosine schedule, weight decay 0.01, clipping at 1.0, packing,
validation every 500 steps, a checkpoint every 1000 keeping the best 5 by
validation loss, early stopping after 3K steps without improvement.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi.config_base import Section

SEVEN_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULT_EVAL_PROMPTS = [
    "Explain in two sentences why the sky is blue.",
    "Write a Python function that returns the factorial of n.",
    "What is 17 * 23? Show your reasoning briefly.",
]


class LoraConfig(Section):
    """LoRA adapter shape (spec: r=64, alpha=16, dropout 0.05 on all 7 projections)."""

    r: int = Field(64, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(SEVEN_PROJECTIONS))


class ExplosionConfig(Section):
    """The spec's loss-explosion rules, relative to the configured learning rate.

    Spec (base LR 5e-6): loss > 3.0 after 1K steps → LR 3e-6 (×0.6); loss > 5.0 →
    stop and restart with LR 2e-6 (×0.4). A NaN/inf loss stops at any step.
    """

    after_steps: int = Field(1000, ge=0, description="the loss thresholds apply from this step on")
    reduce_above: float = Field(3.0, gt=0.0, description="training loss above this lowers the LR once")
    reduce_factor: float = Field(0.6, gt=0.0, lt=1.0, description="new LR = LR × this (spec 5e-6 → 3e-6)")
    stop_above: float = Field(5.0, gt=0.0, description="training loss above this stops the run")
    restart_factor: float = Field(0.4, gt=0.0, lt=1.0, description="suggested restart LR = LR × this (spec → 2e-6)")


class EarlyStoppingConfig(Section):
    """Stop when validation stops improving or diverges from training (spec: 3K steps, gap 0.5)."""

    patience: int | None = Field(6, ge=1, description="evaluations without a new best val loss (6 × 500 = 3K steps)")
    min_delta: float = Field(0.0, ge=0.0, description="an improvement smaller than this does not count")
    overfit_gap: float | None = Field(0.5, gt=0.0, description="stop when val_loss > train_loss + gap")


class TuneConfig(Section):
    """`cogumi tune`: a Ray Tune search over training (LR, rank, alpha, dropout)."""

    num_samples: int = Field(8, ge=1, description="trials")
    max_concurrent: int = Field(1, ge=1)
    search: Literal["auto", "random", "optuna"] = Field(
        "auto", description="auto = Optuna (TPE) when installed, else random search")
    learning_rate: tuple[float, float] = Field((1e-5, 5e-4), description="log-uniform range")
    r: list[int] = Field(default_factory=lambda: [16, 32, 64])
    alpha: list[int] = Field(default_factory=lambda: [16, 32])
    dropout: tuple[float, float] = Field((0.0, 0.1), description="uniform range")
    grace_period: int = Field(1, ge=1, description="ASHA: checkpoints a trial gets before it can be stopped")
    reduction_factor: int = Field(2, ge=2, description="ASHA halving rate")
    driver_cpus: float = Field(0.5, gt=0.0, description="CPUs reserved by each trial's driver function")
    stage: str = Field("tune", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _ranges(self) -> TuneConfig:
        for name in ("learning_rate", "dropout"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{name} range must be [low, high] with 0 <= low <= high, got {lo}, {hi}")
        if self.learning_rate[0] <= 0:
            raise ValueError("learning_rate range must be positive (it is sampled log-uniformly)")
        if not self.r or not self.alpha:
            raise ValueError("r and alpha need at least one choice each")
        return self


class TrainConfig(Section):
    """Phase 1A/1B: QLoRA SFT of the student on Ray Train."""

    stage: str = Field("train", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                       description="run-dir stage folder: train (1A), train-1b (1B)")
    data: str = Field("stage:curate/curated.parquet",
                      description="training examples: 'stage:<stage>/<file>' in this run, or a path/URI "
                                  "(.parquet or .jsonl; curated schema or {instruction, output})")
    val_data: str | None = Field(None, description="validation file; default: split val_fraction off data")
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    init_adapter: str | None = Field(None, description="continue training this PEFT adapter "
                                                       "(Phase 1B: 'stage:train/adapter')")
    qlora: bool = Field(True, description="4-bit NF4 base (bitsandbytes); false = bf16/fp32 base, plain LoRA")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    learning_rate: float = Field(2e-4, gt=0.0)
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs")
    max_seq_length: int = Field(2048, ge=32)
    batch_size: int = Field(4, ge=1, description="per worker")
    grad_accum: int = Field(8, ge=1)
    packing: bool = Field(True, description="best-fit-decreasing packing; samples never attend to each other")
    gradient_checkpointing: bool = True
    optimizer: Literal["auto", "paged_adamw_8bit", "adamw_8bit", "adamw_torch"] = Field(
        "auto", description="auto = paged 8-bit AdamW on CUDA, 8-bit AdamW where bitsandbytes runs, else AdamW")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto = bf16 on CUDA, fp32 on CPU")
    log_steps: int = Field(10, ge=1)
    eval_steps: int = Field(500, ge=1, description="validation loss + perplexity every N steps")
    save_steps: int = Field(1000, ge=1, description="checkpoint every N steps (a multiple of eval_steps)")
    keep_best: int = Field(5, ge=1, description="checkpoints kept, best by validation loss")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    explosion: ExplosionConfig = Field(default_factory=ExplosionConfig)
    eval_prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_EVAL_PROMPTS),
                                    description="fixed prompts answered by every checkpoint")
    eval_max_tokens: int = Field(64, ge=1)
    merge: bool = Field(False, description="also write the dequantised base + adapter merged in bf16")
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(1.0, gt=0.0, description="with use_gpu")
    max_failures: int = Field(1, ge=-1, description="worker restarts from the last checkpoint (-1 = unlimited)")
    worker_start_timeout_s: float = Field(600.0, gt=0.0, description="how long Ray Train waits for workers to "
                                          "start (slow on loaded or autoscaling clusters; Ray's default is 60)")
    deepspeed: Literal["none", "zero2", "zero3"] = Field(
        "none", description="zero2 for multi-GPU LoRA; zero3 is refused with a 4-bit base")
    seed: int | None = Field(None, description="default: run.seed")
    fail_once_at_step: int | None = Field(None, ge=1, description="testing: a worker raises once at this step")
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.save_steps % self.eval_steps:
            raise ValueError(f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps}) "
                             "so every checkpoint has a validation loss")
        if self.deepspeed == "zero3" and self.qlora:
            raise ValueError("DeepSpeed ZeRO-3 cannot shard a 4-bit (bitsandbytes NF4) base model here; "
                             "use deepspeed: zero2 (LoRA states sharded, 4-bit base replicated) or qlora: false")
        if self.deepspeed != "none" and not self.use_gpu:
            raise ValueError(f"deepspeed: {self.deepspeed} needs use_gpu: true")
        return self
