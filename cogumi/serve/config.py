"""Phase 5 serving settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cogumi.config_base import Section


class ServeConfig(Section):
    """Phase 5: the OpenAI-compatible endpoint."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth: Literal["open-local", "keys"] = "keys"
