"""Phase 1B/1C evaluation settings."""

from __future__ import annotations

from pydantic import Field

from cogumi.config_base import ModelConfig, Section


class EvaluateConfig(Section):
    """Phase 1B/1C: benchmarks and judge comparison."""

    reference: ModelConfig | None = None
    samples_per_category: int = Field(50, ge=1)
    skip_1c_at: float = Field(0.90, ge=0.0, le=1.0)
    require_1c_below: float = Field(0.85, ge=0.0, le=1.0)
