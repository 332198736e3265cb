"""Rate schedule (RPM/TPM, settle, 429 pause) and the retry policy (classification, backoff, Retry-After)."""

from __future__ import annotations

import json
import random

import httpx
import openai
import pytest

from cogumi.endpoints.config import RetryConfig
from cogumi.endpoints.limiter import RateSchedule
from cogumi.endpoints.retry import RetriesExhausted, backoff_delay, call_with_retries, classify
from cogumi.errors import BackendError


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_rpm_is_never_exceeded_in_any_minute_and_is_reached():
    clock = FakeClock()
    sched = RateSchedule(clock)
    sched.configure("t", rpm=30, tpm=10**9)
    sends = []
    for _ in range(200):  # many workers asking at once: every request is booked
        sends.append(clock.t + sched.reserve("t", 10))
    assert max_in_window(sends, 60.0) == 30
    assert sends[-1] - sends[0] == pytest.approx(199 * 2.0)


def test_tpm_spaces_requests_by_their_tokens_and_settles():
    clock = FakeClock()
    sched = RateSchedule(clock)
    sched.configure("t", rpm=10**6, tpm=600)  # 10 tokens a second
    assert sched.reserve("t", 100) == 0.0
    assert sched.reserve("t", 100) == pytest.approx(10.0)
    sched.settle("t", reserved=100, actual=20)  # the second call used only 20 tokens
    assert sched.reserve("t", 1) == pytest.approx(12.0)


def test_pause_delays_every_worker():
    clock = FakeClock()
    sched = RateSchedule(clock)
    sched.configure("t", rpm=600, tpm=10**9)
    sched.reserve("t", 1)
    sched.pause("t", 5.0)
    assert sched.reserve("t", 1) == pytest.approx(5.0)
    with pytest.raises(KeyError, match="configure"):
        sched.reserve("unknown", 1)


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    req = httpx.Request("POST", "http://x/v1/chat/completions")
    resp = httpx.Response(status, headers=headers or {}, request=req, json={"error": {"message": "m"}})
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError, 400: openai.BadRequestError}[status]
    return cls("m", response=resp, body=None)


def _wrapped(err: Exception) -> BackendError:
    """What OpenAIBackend raises: a BackendError `from None` whose __context__ is the client error."""
    try:
        try:
            raise err
        except Exception:
            raise BackendError("wrapped", "x") from None
    except BackendError as exc:
        return exc


def test_classify_reads_status_and_retry_after_through_the_backend_error():
    f = classify(_wrapped(_status_error(429, {"retry-after": "1.5"})))
    assert (f.kind, f.status, f.retry_after, f.transient) == ("rate_limit", 429, 1.5, True)
    assert classify(_wrapped(_status_error(429, {"retry-after-ms": "250"}))).retry_after == 0.25
    assert classify(_wrapped(_status_error(500))).kind == "server"
    assert classify(_wrapped(_status_error(400))).transient is False
    req = httpx.Request("POST", "http://x")
    assert classify(_wrapped(openai.APITimeoutError(request=req))).kind == "timeout"
    assert classify(_wrapped(openai.APIConnectionError(request=req))).kind == "connection"
    assert classify(json.JSONDecodeError("x", "doc", 0)).kind == "malformed"
    assert classify(ValueError("bad messages")).kind == "fatal"


def test_backoff_is_exponential_with_full_jitter_and_honours_retry_after():
    policy = RetryConfig(base_s=1.0, max_s=8.0)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [backoff_delay(attempt, policy, None, rng) for _ in range(300)]
        assert 0.0 <= min(delays) and max(delays) <= ceiling
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling
    assert min(backoff_delay(1, policy, 3.0, rng) for _ in range(50)) >= 3.0
    assert backoff_delay(1, RetryConfig(honour_retry_after=False, base_s=0.01), 3.0, rng) <= 0.01


def test_call_with_retries_retries_transient_and_stops_on_fatal():
    sleeps: list[float] = []
    errors = [_wrapped(_status_error(429, {"retry-after": "0.5"})), _wrapped(_status_error(500))]
    seen = []

    def flaky():
        if errors:
            raise errors.pop(0)
        return "ok"

    result, attempts = call_with_retries(flaky, RetryConfig(base_s=0.1), seen.append, sleeps.append,
                                         random.Random(1))
    assert (result, attempts) == ("ok", 3)
    assert [f.kind for f in seen] == ["rate_limit", "server"] and sleeps[0] >= 0.5

    def fatal():
        raise _wrapped(_status_error(400))

    with pytest.raises(RetriesExhausted, match="HTTP 400.*1 attempt"):
        call_with_retries(fatal, RetryConfig(), sleep=sleeps.append)

    def always_500():
        raise _wrapped(_status_error(500))

    with pytest.raises(RetriesExhausted) as exc:
        call_with_retries(always_500, RetryConfig(max_attempts=3, base_s=0.01), sleep=lambda s: None)
    assert [f.kind for f in exc.value.failures] == ["server"] * 3


def test_the_limiter_books_each_cap_less_the_headroom():
    from cogumi.curate.config import CurateConfig, JudgeConfig, TeacherConfig

    cfg = CurateConfig(teachers=[TeacherConfig(name="a", rpm=600, tpm=10_000), TeacherConfig(name="b", rpm=30)],
                       judge=JudgeConfig(rpm=100, tpm=50_000), rate_headroom=0.9)
    limits = cfg.rate_limits()
    assert limits == {"a": (540.0, 9000.0), "b": (27.0, 90_000.0), "judge": (90.0, 45_000.0)}
    clock = FakeClock()
    schedule = RateSchedule(clock)
    schedule.configure("a", *limits["a"])
    sends = []
    for _ in range(1200):
        clock.t += schedule.reserve("a", 1)
        sends.append(clock.t)
    # jitter of up to 5 % of a slot at the server still leaves every minute at or under the 600 cap
    rng = random.Random(0)
    arrivals = [t + rng.uniform(0, 0.05 * 60 / 540) for t in sends]
    assert max_in_window(arrivals, 60.0) <= 600
