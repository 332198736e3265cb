"""One rate limiter for the whole Ray cluster: requests and tokens per minute per endpoint.

The pure core (:class:`RateSchedule`) hands out send times: consecutive requests
to one key are spaced at least ``60 / rpm`` seconds apart and a request of ``n``
tokens pushes the next one back ``60 * n / tpm`` seconds, so no 60-second window
ever holds more than ``rpm`` requests (or ``tpm`` tokens plus one request's
worth). Tokens are reserved before the call (prompt estimate + max_tokens) and
settled with the real usage after it. A 429 pauses the key for every worker.

:class:`RateLimiterActor` is a named, detached Ray actor around the schedule,
found or created with :func:`get_limiter`; workers ask it for a delay and sleep
locally. Callers book ``curate.rate_headroom`` of each cap (see
``CurateConfig.rate_limits``) so arrival jitter at the server stays under it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ACTOR_NAME = "cogumi-rate-limiter"
NAMESPACE = "cogumi"


@dataclass
class _Key:
    rpm: float
    tpm: float
    next_request: float = 0.0
    next_token: float = 0.0


class RateSchedule:
    """Send-time schedule per key (pure; ``clock`` is injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.keys: dict[str, _Key] = {}

    def configure(self, key: str, rpm: float, tpm: float) -> None:
        """Set (or change) the limits of ``key``; the schedule so far is kept."""
        if key in self.keys:
            self.keys[key].rpm, self.keys[key].tpm = float(rpm), float(tpm)
        else:
            self.keys[key] = _Key(float(rpm), float(tpm))

    def reserve(self, key: str, tokens: int) -> float:
        """Book the next slot for a request of about ``tokens`` tokens.

        Returns:
            Seconds from now until the request may be sent (0 = now).
        """
        k = self._key(key)
        now = self.clock()
        send = max(now, k.next_request, k.next_token)
        k.next_request = send + 60.0 / k.rpm
        k.next_token = send + 60.0 * max(tokens, 0) / k.tpm
        return send - now

    def settle(self, key: str, reserved: int, actual: int) -> None:
        """Correct the token booking once the real usage of a call is known."""
        k = self._key(key)
        k.next_token += 60.0 * (actual - reserved) / k.tpm

    def pause(self, key: str, seconds: float) -> None:
        """No request to ``key`` before ``seconds`` from now (a 429's Retry-After)."""
        k = self._key(key)
        until = self.clock() + max(seconds, 0.0)
        k.next_request = max(k.next_request, until)

    def _key(self, key: str) -> _Key:
        if key not in self.keys:
            raise KeyError(f"rate limiter has no limits for '{key}' (configure it first)")
        return self.keys[key]


class LocalLimiter:
    """The schedule behind a lock, for one process (tests, no Ray)."""

    def __init__(self) -> None:
        self.schedule = RateSchedule()
        self._lock = threading.Lock()

    def configure(self, key: str, rpm: float, tpm: float) -> None:
        with self._lock:
            self.schedule.configure(key, rpm, tpm)

    def acquire(self, key: str, tokens: int) -> None:
        """Block until a request of ``tokens`` may go to ``key``."""
        with self._lock:
            delay = self.schedule.reserve(key, tokens)
        if delay > 0:
            time.sleep(delay)

    def settle(self, key: str, reserved: int, actual: int) -> None:
        with self._lock:
            self.schedule.settle(key, reserved, actual)

    def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            self.schedule.pause(key, seconds)


class RateLimiterActor:
    """Ray actor holding the cluster's schedule (decorated in :func:`get_limiter`)."""

    def __init__(self) -> None:
        self.schedule = RateSchedule(time.time)

    def configure(self, key: str, rpm: float, tpm: float) -> None:
        self.schedule.configure(key, rpm, tpm)

    def reserve(self, key: str, tokens: int) -> float:
        return self.schedule.reserve(key, tokens)

    def settle(self, key: str, reserved: int, actual: int) -> None:
        self.schedule.settle(key, reserved, actual)

    def pause(self, key: str, seconds: float) -> None:
        self.schedule.pause(key, seconds)


class RemoteLimiter:
    """Worker-side view of the actor with the same interface as :class:`LocalLimiter`.

    ``limits`` (key -> (rpm, tpm)) are re-sent when the actor answers that it does not know a key:
    it was restarted (its node died) and lost its schedule, which costs at most one burst of sends.
    """

    def __init__(self, handle, limits: dict[str, tuple[float, float]] | None = None) -> None:
        self.handle = handle
        self.limits = dict(limits or {})

    def configure(self, key: str, rpm: float, tpm: float) -> None:
        import ray

        self.limits[key] = (rpm, tpm)
        ray.get(self.handle.configure.remote(key, rpm, tpm))

    def acquire(self, key: str, tokens: int) -> None:
        import ray

        try:
            delay = ray.get(self.handle.reserve.remote(key, tokens))
        except ray.exceptions.RayTaskError as exc:
            if not isinstance(exc.cause, KeyError) or key not in self.limits:
                raise
            ray.get([self.handle.configure.remote(k, *lim) for k, lim in self.limits.items()])
            delay = ray.get(self.handle.reserve.remote(key, tokens))
        if delay > 0:
            time.sleep(delay)

    def settle(self, key: str, reserved: int, actual: int) -> None:
        self.handle.settle.remote(key, reserved, actual)

    def pause(self, key: str, seconds: float) -> None:
        self.handle.pause.remote(key, seconds)


def get_limiter(name: str = ACTOR_NAME):
    """The cluster's limiter actor (created on first use; shared by every job on the cluster).

    Detached, so it outlives the driver that created it: a second run in the same process, or
    another job, finds a live actor by name rather than one that dies with its first owner's
    references. Restarted if its node dies (limits are re-sent by :class:`RemoteLimiter`).

    Returns:
        A Ray actor handle; wrap it in :class:`RemoteLimiter` inside workers.
    """
    import ray

    remote: Any = ray.remote  # its overloads do not list the actor options
    actor_cls = remote(num_cpus=0, max_concurrency=1, max_restarts=-1, max_task_retries=-1)(RateLimiterActor)
    return actor_cls.options(name=name, namespace=NAMESPACE, get_if_exists=True, lifetime="detached").remote()
