"""Phase 4 router settings."""

from __future__ import annotations

from pydantic import Field

from cogumi.config_base import Section


class RouterConfig(Section):
    """Phase 4: router MLP and thresholds."""

    confidence_threshold: float = Field(0.8, ge=0.0, le=1.0)
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
