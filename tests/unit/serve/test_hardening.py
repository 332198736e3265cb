"""Serving under attack: disconnects stop generation, chunked bodies are bounded, odd paths are 4xx,
metrics stay bounded, /ready hides details, wrong keys are braked (the schema fuzz: test_openapi_fuzz.py).

The model-free tests run the app in-process over a :class:`FakeClient`; the disconnect tests
use the real SmolLM2 worker behind uvicorn and hang up a raw socket mid-request.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import string
import time

import httpx
import pytest

from cogumi.serve.auth import AuthFailures
from tests.unit.serve.support import TEST_KEY, FakeClient, fake_app

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
COUNT = [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]


def _client(app, host: str = "10.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 5000)), base_url="http://t")


# ---------------------------------------------------------------- disconnects (real model, real sockets)

def _hang_up(url: str, path: str, body: dict, worker) -> float:
    """Send ``body``, wait until the worker generates, close the socket; seconds until the worker is free."""
    port = int(url.rsplit(":", 1)[1])
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_KEY}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    deadline = time.perf_counter() + 20
    while not worker._lock.locked() and time.perf_counter() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # generating now
    assert worker._lock.locked(), "the request never reached the model"
    sock.close()
    gone = time.perf_counter()
    while worker._lock.locked() and time.perf_counter() - gone < 20:
        time.sleep(0.02)
    return time.perf_counter() - gone


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"model": "cogumi/base", "messages": COUNT}),
    ("/v1/completions", {"model": "cogumi/base", "prompt": "1, 2, 3, 4,"}),
    ("/v1/completions", {"model": "cogumi/base", "prompt": "1, 2, 3, 4,", "stream": True}),
    ("/v1/chat/completions", {"model": "cogumi", "messages": COUNT, "stream": True}),  # routed: the base pass
], ids=["chat", "completions", "completions-stream", "routed-stream"])
def test_client_disconnect_frees_the_model_within_2s(api_server, base_worker, path, body):
    body = body | {"max_tokens": 250, "temperature": 0}
    base_worker.generate({"kind": "complete", "prompt": "1, 2,", "messages": None, "adapter": None,
                          "chosen_logprobs": False, "params": {**_params(), "max_tokens": 1}})  # warm
    assert _hang_up(api_server.url, path, body, base_worker) < 2.0
    after = httpx.post(api_server.url + "/v1/completions", headers=AUTH, timeout=30,
                       json={"model": "cogumi/base", "prompt": "Hi", "max_tokens": 2})
    assert after.status_code == 200  # and the next request is served


def _params() -> dict:
    from cogumi.models.inference import SamplingParams

    return dict(vars(SamplingParams()))


def test_disconnect_cancels_a_slow_fake_generation_in_process():
    slow = FakeClient(seconds_per_token=0.05)
    app = fake_app(slow)

    async def run():
        async with _client(app) as http:
            task = asyncio.ensure_future(http.post("/v1/chat/completions", headers=AUTH, json={
                "model": "cogumi/base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200}))
            while slow.in_flight == 0:
                await asyncio.sleep(0.01)
            task.cancel()  # the client gives up: ASGITransport reports a disconnect
            t0 = time.perf_counter()
            while slow.in_flight and time.perf_counter() - t0 < 5:
                await asyncio.sleep(0.01)
            return time.perf_counter() - t0

    assert asyncio.run(run()) < 0.5


# ---------------------------------------------------------------- bodies and paths

def test_chunked_body_over_the_limit_is_413_before_parsing():
    fake = FakeClient()
    app = fake_app(fake)
    sent = 0

    async def chunks():
        nonlocal sent
        head = b'{"model": "cogumi", "messages": [{"role": "user", "content": "'
        yield head
        for _ in range(400):  # 25 MB in 64 KB chunks, no Content-Length
            sent += 65536
            yield b"x" * 65536
        yield b'"}]}'

    async def run():
        async with _client(app) as http:
            return await http.post("/v1/chat/completions", headers=AUTH, content=chunks())

    t0 = time.perf_counter()
    r = asyncio.run(run())
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert fake.calls == 0 and sent < 2_000_000 and time.perf_counter() - t0 < 2  # read ~1 MB, then stopped


def test_chunked_body_over_real_http_is_413(api_server):
    port = int(api_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_KEY}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        try:
            for _ in range(400):  # 25 MB
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and stopped reading
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("path", ["/v1/models/%FF", "/v1/%C3%28", "/v1/models/a%00b", "/%FF", "/ready%0A"])
def test_undecodable_or_control_paths_are_400(path):
    async def run():
        async with _client(fake_app()) as http:
            return [await http.get(path), await http.get(path, headers=AUTH)]

    for r in asyncio.run(run()):
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_path"


# ---------------------------------------------------------------- metrics, probes, auth brake

def test_metrics_stay_bounded_after_3000_random_paths():
    app = fake_app()
    rng = random.Random(0)

    async def run():
        async with _client(app) as http:
            small = len((await http.get("/ready", headers=AUTH)).content)
            for _ in range(3000):
                tail = "".join(rng.choices(string.ascii_letters + string.digits + "/%-._~", k=rng.randint(1, 30)))
                r = await http.get("/v1/" + tail)
                assert r.status_code < 500
            for _ in range(50):
                await http.get(f"/v1/models/{rng.random()}", headers=AUTH)
            return small, await http.get("/ready", headers=AUTH)

    small, ready = asyncio.run(run())
    counters = ready.json()["counters"]
    assert len(ready.content) < small + 1500 and len(counters) < 12, counters
    assert any("endpoint=unmatched" in k for k in counters) and any("{model_id}" in k for k in counters)


def test_ready_shows_details_only_with_a_key():
    async def run():
        async with _client(fake_app()) as http:
            await http.get("/v1/models", headers=AUTH)
            return [await http.get("/ready"), await http.get("/ready", headers={"Authorization": "Bearer nope-nope"}),
                    await http.get("/ready", headers=AUTH), await http.get("/health")]

    anon, wrong, keyed, health = asyncio.run(run())
    assert anon.json() == wrong.json() == {"ready": True} and health.json() == {"status": "ok"}
    assert "key-" not in anon.text and "counters" not in anon.text
    assert keyed.json()["counters"] and keyed.json()["models"]


def test_repeated_wrong_keys_are_braked_with_429_and_retry_after():
    app = fake_app(auth_failures={"free_attempts": 3, "base_delay_s": 0.3, "max_delay_s": 5})

    async def run():
        async with _client(app, "10.1.1.1") as guesser, _client(app, "10.2.2.2") as other:
            wrong = {"Authorization": "Bearer guess-000000"}
            codes = [(await guesser.get("/v1/models", headers=wrong)).status_code for _ in range(4)]
            braked = await guesser.get("/v1/models", headers=AUTH)  # even the right key waits
            elsewhere = await other.get("/v1/models", headers=AUTH)  # another client is not affected
            await asyncio.sleep(0.35)
            later = await guesser.get("/v1/models", headers=AUTH)
            return codes, braked, elsewhere, later

    codes, braked, elsewhere, later = asyncio.run(run())
    assert codes == [401, 401, 401, 401]
    assert braked.status_code == 429 and int(braked.headers["retry-after"]) >= 1
    assert braked.json()["error"]["code"] == "too_many_auth_failures"
    assert elsewhere.status_code == 200 and later.status_code == 200


def test_auth_brake_doubles_and_forgets_within_bounded_memory():
    brake = AuthFailures(free=2, base_delay_s=1.0, max_delay_s=8.0, max_clients=100)
    delays = [brake.failed("a", now=0.0) for _ in range(7)]
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert brake.blocked_for("a", now=1.0) == pytest.approx(7.0)
    brake.succeeded("a")
    assert brake.blocked_for("a", now=1.0) == 0.0
    for i in range(1000):
        brake.failed(f"10.0.{i // 256}.{i % 256}", now=float(i))
    assert len(brake) == 100
