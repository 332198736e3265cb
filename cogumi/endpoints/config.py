"""Settings shared by every metered endpoint: the one retry policy (and batch mode, see :mod:`.batch`)."""

from __future__ import annotations

from pydantic import Field

from cogumi.config_base import Section


class RetryConfig(Section):
    """Retries on 429, 5xx, timeouts and malformed bodies: exponential backoff with full jitter."""

    max_attempts: int = Field(6, ge=1, description="attempts per call, the first included")
    base_s: float = Field(1.0, gt=0.0, description="first backoff ceiling")
    max_s: float = Field(60.0, gt=0.0, description="backoff ceiling")
    honour_retry_after: bool = Field(True, description="wait at least the server's Retry-After")
