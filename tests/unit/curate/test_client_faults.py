"""A metered teacher against the real local OpenAI-compatible server with injected faults."""

from __future__ import annotations

import time

import pytest

from cogumi.config_base import ModelConfig
from cogumi.endpoints.cache import ResponseCache
from cogumi.endpoints.metered import MeteredEndpoint
from cogumi.endpoints.config import RetryConfig
from cogumi.endpoints.limiter import LocalLimiter
from cogumi.endpoints.retry import RetriesExhausted
from cogumi.models.inference import SamplingParams

MSGS = [{"role": "user", "content": "Name one primary colour."}]


def drain(server, quiet_s: float = 1.5) -> None:
    """Wait until the server has answered everything, abandoned (timed-out) requests included."""
    seen, since = -1, time.monotonic()
    while time.monotonic() - since < quiet_s:
        if len(server.requests) != seen:
            seen, since = len(server.requests), time.monotonic()
        time.sleep(0.1)
    with server._lock:
        pass


def endpoint(server, tmp_path, attempts=10, limiter=None):
    lim = limiter or LocalLimiter()
    lim.configure("t", 6000, 10**7)
    model = ModelConfig(backend="openai", base_url=server.base_url, model="local-teacher", timeout_s=4.5,
                        max_retries=5)
    return MeteredEndpoint("t", model, price_in=2.0, price_out=10.0,
                           retry=RetryConfig(max_attempts=attempts, base_s=0.5, max_s=8.0), limiter=lim,
                           cache=ResponseCache(str(tmp_path / "cache")))


@pytest.fixture
def server(fresh_openai_server):
    """The shared server, warmed up (its first answer is slow) with an empty request log; drained after."""
    warm(fresh_openai_server)
    fresh_openai_server.paid.clear()
    yield fresh_openai_server
    fresh_openai_server.faults.clear()
    drain(fresh_openai_server)


def warm(server) -> None:
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=300)
    client.chat.completions.create(model="local-teacher", messages=MSGS, max_tokens=2)
    server.requests.clear()


def test_faults_are_retried_then_cached(server, tmp_path):
    ep = endpoint(server, tmp_path)
    assert ep.model.max_retries == 0  # the client's own retries are off: this policy owns them
    server.faults.extend(["429", "500", "garbage", "timeout"])
    t0 = time.perf_counter()
    res = ep.chat(MSGS, SamplingParams(max_tokens=1))  # tiny answers: abandoned requests cost the server little
    elapsed = time.perf_counter() - t0
    drain(server)
    # 429, 500, garbage, timeout, then success (a busy server can time out once more after the
    # timeout fault, which blocks it for 5 s): one request per attempt, no hidden client retries
    assert res.attempts >= 5 and not res.cached
    assert len(server.requests) == res.attempts
    assert elapsed >= 4.5 + 0.2  # waited out the timeout and the Retry-After
    u = res.generation.usage
    # every paid attempt is in the bill: the server also answered (and billed) the timed-out ones;
    # their prompt tokens are counted, their completion tokens are unknown to the client
    assert res.unanswered >= 1 and len(server.paid) == 1 + res.unanswered
    assert res.estimated_usd == pytest.approx(res.unanswered * u.prompt_tokens * 2.0 / 1e6)
    assert all(p["prompt_tokens"] == u.prompt_tokens for p in server.paid)
    billed_prompts = sum(p["prompt_tokens"] for p in server.paid) * 2.0
    assert res.cost_usd == pytest.approx((billed_prompts + u.completion_tokens * 10.0) / 1e6)
    again = endpoint(server, tmp_path).chat(MSGS, SamplingParams(max_tokens=1))
    assert again.cached and again.cost_usd == 0.0 and again.generation.text == res.generation.text
    assert len(server.requests) == res.attempts  # the rerun paid nothing


def test_exhausted_retries_name_every_failure(server, tmp_path):
    server.faults.extend(["500", "429", "500"])
    with pytest.raises(RetriesExhausted, match=r"after 3 attempt\(s\): server, rate_limit, server"):
        endpoint(server, tmp_path, attempts=3).chat(MSGS, SamplingParams(max_tokens=6))
    assert len(server.requests) == 3


def test_a_429_pauses_the_key_for_every_caller(server, tmp_path):
    paused = []

    class Recording(LocalLimiter):
        def pause(self, key, seconds):
            paused.append((key, seconds, time.monotonic()))
            super().pause(key, seconds)

    limiter = Recording()
    server.retry_after_s, old = 1.0, server.retry_after_s
    try:
        server.faults.append("429")
        endpoint(server, tmp_path, limiter=limiter).chat(MSGS, SamplingParams(max_tokens=1, seed=11))
    finally:
        server.retry_after_s = old
    (key, seconds, at), = paused
    assert (key, seconds) == ("t", 1.0)  # the server's Retry-After went to the shared schedule
    next_slot = limiter.schedule.keys["t"].next_request
    assert next_slot >= at + 1.0 - 0.05  # nobody (not only the caller that got the 429) sent before it
