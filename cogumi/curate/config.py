"""Phase 0 curation settings."""

from __future__ import annotations

from pydantic import Field

from cogumi.config_base import ModelConfig, Section


class TeacherConfig(Section):
    """One OpenAI-compatible (or local) teacher with its price, limits and share of work."""

    name: str
    model: ModelConfig = Field(default_factory=ModelConfig)
    price_in_per_mtok: float = Field(0.0, ge=0.0, description="USD per million input tokens")
    price_out_per_mtok: float = Field(0.0, ge=0.0, description="USD per million output tokens")
    rpm: int = Field(60, ge=1, description="requests per minute, whole cluster")
    tpm: int = Field(100_000, ge=1, description="tokens per minute, whole cluster")
    domains: list[str] = Field(default_factory=list, description="empty = all domains")
    difficulties: list[str] = Field(default_factory=list, description="empty = all")
    share: float = Field(1.0, gt=0.0, description="relative share of prompts")


class CurateConfig(Section):
    """Phase 0: prompts, teachers, judge threshold, dedup."""

    prompts: str = Field("embedded", description="'embedded' seed set, a JSONL/Parquet path or HF name")
    limit: int | None = Field(None, ge=1, description="use at most this many prompts")
    teachers: list[TeacherConfig] = Field(
        default_factory=lambda: [TeacherConfig(name="embedded")]
    )
    min_judge_score: float = Field(7.0, ge=1.0, le=10.0)
    dedup_threshold: float = Field(0.8, gt=0.0, le=1.0, description="MinHash Jaccard")
    num_perm: int = Field(128, ge=16)
