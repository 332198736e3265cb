"""Which failures are worth retrying, and how long to wait: exponential backoff with full jitter.

Teachers and the judge are built with ``max_retries=0`` on the OpenAI client so
that this module owns the policy: it is the same for every backend, it tells the
cluster-wide limiter about 429s, and it can be tested.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cogumi.endpoints.config import RetryConfig

T = TypeVar("T")


@dataclass
class Failure:
    """A classified call failure."""

    kind: str  # rate_limit | server | timeout | connection | malformed | fatal
    message: str
    status: int | None = None
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        return self.kind != "fatal"

    @property
    def maybe_billed(self) -> bool:
        """The request reached the server and we gave up waiting: it may have been answered and billed."""
        return self.kind == "timeout"


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name) if hasattr(headers, "get") else None
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date: fall back to our own backoff
    return None


def classify(exc: BaseException) -> Failure:
    """Classify an exception from a backend call.

    The OpenAI backend wraps client errors in ``BackendError`` raised ``from None``;
    the original error is still its ``__context__`` and carries the status code
    and headers.
    """
    import openai

    chain: BaseException | None = exc
    seen: list[BaseException] = []
    while chain is not None and len(seen) < 5:
        seen.append(chain)
        chain = chain.__cause__ or chain.__context__
    for err in seen:
        if isinstance(err, openai.APITimeoutError):
            return Failure("timeout", f"request timed out ({err})")
        if isinstance(err, openai.APIConnectionError):
            return Failure("connection", f"connection failed ({err.__cause__ or err})")
        if isinstance(err, openai.APIStatusError):
            status, after = err.status_code, _retry_after(err.response)
            if status == 429:
                return Failure("rate_limit", "HTTP 429 rate limited", status, after)
            if status >= 500 or status in (408, 409):
                return Failure("server", f"HTTP {status}: {str(err.message)[:200]}", status, after)
            return Failure("fatal", f"HTTP {status}: {str(err.message)[:200]}", status)
        if isinstance(err, (json.JSONDecodeError, openai.APIResponseValidationError)):
            return Failure("malformed", f"malformed response body ({err.__class__.__name__})")
        if isinstance(err, TimeoutError):
            return Failure("timeout", str(err) or "timed out")
    text = str(exc)
    if "without choices" in text or "not an OpenAI-compatible reply" in text:
        return Failure("malformed", text[:300])
    return Failure("fatal", f"{exc.__class__.__name__}: {text[:300]}")


def backoff_delay(attempt: int, policy: RetryConfig, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = first retry).

    Full jitter: uniform in ``[0, min(max_s, base_s * 2**(attempt-1))]``, and never
    less than the server's ``Retry-After`` when it sent one.
    """
    uniform = rng.uniform if rng is not None else random.uniform
    ceiling = min(policy.max_s, policy.base_s * 2 ** (attempt - 1))
    delay = uniform(0.0, ceiling)
    if policy.honour_retry_after and retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_s * 5))
    return delay


class RetriesExhausted(Exception):
    """All attempts failed; ``failures`` lists what happened each time.

    ``unanswered`` and ``estimated_usd`` are set by the caller that bills the attempts
    (:class:`~cogumi.endpoints.metered.MeteredEndpoint`): a timed-out attempt may still be paid.
    """

    def __init__(self, failures: list[Failure]):
        self.failures = failures
        self.unanswered, self.estimated_usd = 0, 0.0
        last = failures[-1]
        super().__init__(f"{last.message} (after {len(failures)} attempt(s): "
                         f"{', '.join(f.kind for f in failures)})")


def call_with_retries(fn: Callable[[], T], policy: RetryConfig,
                      on_failure: Callable[[Failure], None] | None = None,
                      sleep: Callable[[float], None] = time.sleep,
                      rng: random.Random | None = None) -> tuple[T, int]:
    """Run ``fn`` until it succeeds, a failure is fatal, or attempts run out.

    Args:
        on_failure: told about every failure (the limiter pauses the key on a 429).

    Returns:
        (result, attempts used).

    Raises:
        RetriesExhausted: fatal failure or no attempts left.
    """
    failures: list[Failure] = []
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return fn(), attempt
        except Exception as exc:  # noqa: BLE001 - classified below
            failure = classify(exc)
            failures.append(failure)
            if on_failure is not None:
                on_failure(failure)
            if not failure.transient or attempt == policy.max_attempts:
                raise RetriesExhausted(failures) from exc
            sleep(backoff_delay(attempt, policy, failure.retry_after, rng))
    raise AssertionError("unreachable")
