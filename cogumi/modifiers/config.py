"""Phase 3 domain-modifier settings: tasks, failure mining, clustering, the teacher cascade, adapters.

Defaults follow the spec (ranks code 128 / reasoning 112 / automation 96, KMeans k=8,
judge keeps >= 7/10); ``configs/local.yaml`` shrinks them so the stage runs on a CPU.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi.config_base import ModelConfig, Section
from cogumi.endpoints.config import BatchConfig, EndpointMode, RetryConfig
from cogumi.route.config import EmbeddingSettings


class DomainSettings(Section):
    """One domain: how its answers are verified and the rank of its adapter."""

    rank: int = Field(64, ge=1, description="LoRA rank of this domain's adapter")
    alpha: int | None = Field(None, ge=1, description="LoRA alpha; None = train.lora.alpha")
    verify: Literal["code", "math", "judge"] = Field(
        "judge", description="code: run the tests; math: compare the final number; judge: score >= min_judge_score")


def _spec_domains() -> dict[str, DomainSettings]:
    return {"code": DomainSettings(rank=128, verify="code"),
            "reasoning": DomainSettings(rank=112, verify="math"),
            "automation": DomainSettings(rank=96, verify="judge")}


class TierSettings(Section):
    """One teacher tier (any OpenAI-compatible endpoint or a local model) and its price."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    model: ModelConfig = Field(default_factory=ModelConfig)
    price_in_per_mtok: float = Field(0.0, ge=0.0, description="USD per million input tokens")
    price_out_per_mtok: float = Field(0.0, ge=0.0, description="USD per million output tokens")
    rpm: int = Field(600, ge=1)
    tpm: int = Field(1_000_000, ge=1)
    max_tokens: int | None = Field(None, ge=1, description="answer cap; None = modifiers.max_tokens")
    mode: EndpointMode = Field("online", description="online: one call per prompt; batch: every prompt reaching "
                                                     "this tier goes through the provider's batch API (OpenAI "
                                                     "Batch shape) at its batch price")
    batch: BatchConfig = Field(default_factory=BatchConfig, description="batch files, polling, rounds, prices")

    @model_validator(mode="after")
    def _batch_needs_http(self) -> TierSettings:
        if self.mode == "batch" and self.model.backend != "openai":
            raise ValueError(f"cascade tier '{self.name}': mode batch needs an OpenAI-compatible endpoint "
                             f"(model.backend openai), got '{self.model.backend}'")
        return self


def _default_tiers() -> list[TierSettings]:
    return [TierSettings(name=n) for n in ("tier1-cheap", "tier2-mid", "tier3-frontier")]


class CascadeSettings(Section):
    """The three-tier teacher cascade: a prompt moves up only when the lower tier's answer fails."""

    tiers: list[TierSettings] = Field(default_factory=_default_tiers, min_length=1,
                                      description="cheapest first; the spec has three")
    accept_unverified_last: bool = Field(
        True, description="keep the last live tier's answer when every tier failed verification "
                          "(flagged verified=false and counted); False = drop the prompt")
    retry: RetryConfig = Field(default_factory=lambda: RetryConfig(max_attempts=3, base_s=0.5, max_s=5.0))
    concurrency: int = Field(2, ge=1, description="prompts in flight")
    use_cache: bool = Field(True, description="cache teacher answers (curation's response cache)")
    cache: str | None = Field(None, description="cache folder/URI; None = <run.root>/cache/responses")


class MiningSettings(Section):
    """Failure mining of the base model on Ray Data."""

    use_ray: bool = Field(True, description="False: mine in this process")
    batch_size: int = Field(8, ge=1)
    num_cpus: float = Field(1.0, gt=0, description="CPUs per mining actor")
    workers: int = Field(1, ge=1, description="mining actors (each loads the model)")
    code_timeout_s: float = Field(10.0, gt=0, description="sandbox wall clock per program")


class AdapterSettings(Section):
    """Adapter training (through ``cogumi.train``'s Ray Train path) and export."""

    max_steps: int | None = Field(None, ge=1, description="None = train.max_steps / epochs")
    export_gguf: bool = Field(True, description="also write a GGUF LoRA next to the PEFT adapter")
    min_examples: int = Field(1, ge=1, description="fewer cascade answers than this: no adapter (recorded)")
    gate: bool = Field(True, description="serve an adapter only when it is not worse than the base on its "
                                         "held-out tasks and held-out references (rejected ones go to rejected/)")
    gate_items: int = Field(20, ge=1, description="held-out reference items the gate scores per domain")


class ModifiersConfig(Section):
    """Phase 3: failure mining, clustering, a tiered teacher cascade and one LoRA adapter per domain."""

    domains: dict[str, DomainSettings] = Field(default_factory=_spec_domains, min_length=1)
    tasks: str = Field("embedded", description="'embedded' (packaged task set) or a .jsonl of "
                                               "{id, domain, prompt, tests?|answer?}")
    tasks_per_domain: int | None = Field(None, ge=2, description="use at most this many tasks per domain")
    holdout_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="tasks kept aside to validate adapters")
    base: ModelConfig | None = Field(None, description="the model whose failures are mined; None = student")
    judge: ModelConfig | None = Field(None, description="judge model; None = the root 'judge' model")
    min_judge_score: float = Field(7.0, ge=0.0, le=10.0, description="judge-verified domains pass at this score")
    max_tokens: int = Field(256, ge=1, description="answer length of base, teachers and adapters")
    clusters: int = Field(8, ge=2, description="KMeans k (the spec: 8-10); clamped to the failures")
    examples_per_cluster: int = Field(3, ge=1)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    mining: MiningSettings = Field(default_factory=MiningSettings)
    cascade: CascadeSettings = Field(default_factory=CascadeSettings)
    adapter: AdapterSettings = Field(default_factory=AdapterSettings)
    seed: int = 0

    @model_validator(mode="after")
    def _names(self) -> ModifiersConfig:
        names = [t.name for t in self.cascade.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"modifiers.cascade.tiers names must be unique, got {names}")
        batch = [t.name for t in self.cascade.tiers if t.mode == "batch"]
        if batch and not self.cascade.use_cache:
            raise ValueError(f"modifiers.cascade.tiers {batch} are in batch mode, which puts the answers in the "
                             "response cache: set modifiers.cascade.use_cache=true")
        return self
