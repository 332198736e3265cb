"""Settings shared by every metered endpoint: the one retry policy (and batch mode, see :mod:`.batch`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cogumi.config_base import Section


class RetryConfig(Section):
    """Retries on 429, 5xx, timeouts and malformed bodies: exponential backoff with full jitter."""

    max_attempts: int = Field(6, ge=1, description="attempts per call, the first included")
    base_s: float = Field(1.0, gt=0.0, description="first backoff ceiling")
    max_s: float = Field(60.0, gt=0.0, description="backoff ceiling")
    honour_retry_after: bool = Field(True, description="wait at least the server's Retry-After")


class BatchConfig(Section):
    """How an endpoint in ``mode: batch`` uses its provider's batch API (OpenAI Batch shape).

    Requests are written into JSONL files of at most ``max_requests_per_file`` requests and
    ``max_file_mb`` megabytes (OpenAI's limits: 50,000 and 200 MB), submitted, polled every
    ``poll_s`` seconds and collected; rows that expired or failed transiently are submitted
    again, at most ``max_rounds`` times in all.
    """

    max_requests_per_file: int = Field(50_000, ge=1, description="requests per batch file (OpenAI: 50,000)")
    max_file_mb: float = Field(200.0, gt=0.0, description="size cap of one batch file (OpenAI: 200 MB)")
    completion_window: str = Field("24h", description="sent as completion_window (OpenAI accepts 24h)")
    poll_s: float = Field(30.0, gt=0.0, description="seconds between status polls")
    max_rounds: int = Field(3, ge=1, description="submissions per row: expired / transiently failed rows are "
                                                "submitted again until this many rounds")
    max_wait_s: float | None = Field(None, gt=0.0, description="stop waiting after this long (the batches keep "
                                                               "running; a rerun collects them); None = no limit")
    discount: float = Field(0.5, ge=0.0, lt=1.0, description="batch price = online price x (1 - discount) "
                                                             "unless explicit batch prices are set (OpenAI: 0.5)")
    price_in_per_mtok: float | None = Field(None, ge=0.0, description="explicit batch USD per million input tokens")
    price_out_per_mtok: float | None = Field(None, ge=0.0, description="explicit batch USD per million output tokens")

    def prices(self, online_in: float, online_out: float) -> tuple[float, float]:
        """(input, output) USD per million tokens in batch mode, from the online prices."""
        factor = 1.0 - self.discount
        return (self.price_in_per_mtok if self.price_in_per_mtok is not None else online_in * factor,
                self.price_out_per_mtok if self.price_out_per_mtok is not None else online_out * factor)


EndpointMode = Literal["online", "batch"]
