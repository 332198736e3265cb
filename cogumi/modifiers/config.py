"""Phase 3 domain-modifier settings."""

from __future__ import annotations

from pydantic import Field

from cogumi.config_base import Section


class ModifiersConfig(Section):
    """Phase 3: domain adapters with per-domain LoRA rank."""

    domains: dict[str, int] = Field(
        default_factory=lambda: {"code": 128, "reasoning": 112, "automation": 96}
    )
    clusters: int = Field(8, ge=2)
