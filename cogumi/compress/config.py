"""Phase 2 compression settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cogumi.config_base import Section


class CompressConfig(Section):
    """Phase 2: pruning, 4-bit quantisation, GGUF, zstd."""

    sparsity: str = Field("2:4", pattern=r"^\d+:\d+$")
    quant_method: Literal["awq", "gptq"] = "awq"
    gguf_types: list[str] = Field(default_factory=lambda: ["Q5_K_M"])
    zstd_level: int = Field(10, ge=1, le=22)
    max_ppl_increase: float = Field(0.10, ge=0.0)
