"""Shared serving test fixtures: a GGUF LoRA, in-process workers, the API on real HTTP (no Ray).

Each serve test folder's ``conftest.py`` imports the fixtures it needs from here.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.unit.serve.gguf_lora import write_gguf_lora

TEST_KEY = "test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiServer:
    """uvicorn in a thread serving a FastAPI app on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> ApiServer:
        self._thread.start()
        deadline = time.time() + 30
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("API server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def code_lora(embedded_gguf, tmp_path_factory) -> Path:
    """A random rank-4 GGUF LoRA for the embedded SmolLM2 (changes its greedy output)."""
    return write_gguf_lora(embedded_gguf, tmp_path_factory.mktemp("lora") / "code.gguf", rank=4, scale=0.3)


@pytest.fixture(scope="session")
def base_worker():
    from cogumi.config_base import ModelConfig
    from cogumi.serve.worker import ModelWorker

    w = ModelWorker(ModelConfig(logits_all=True, n_ctx=512, n_threads=1))
    yield w
    w.close()


@pytest.fixture(scope="session")
def modifier_worker(code_lora):
    from cogumi.config_base import ModelConfig
    from cogumi.serve.worker import ModelWorker

    w = ModelWorker(ModelConfig(n_ctx=512, n_threads=1), {"code": str(code_lora)})
    yield w
    w.close()


def make_service(base_worker, modifier_worker, threshold: float = 0.8, mode: str = "cascade"):
    """A ChatService over in-process workers with the built-in router and one 'code' modifier."""
    from cogumi.serve.config import RoutingSettings
    from cogumi.route.builtin import CascadeRouter
    from cogumi.serve.service import ChatService, LocalClient

    routing = RoutingSettings(mode=mode, confidence_threshold=threshold)
    return ChatService(LocalClient(base_worker), LocalClient(modifier_worker), ["code"],
                       CascadeRouter(threshold, needs_base_answer=(mode == "cascade")), routing)


@pytest.fixture(scope="session")
def api_server(base_worker, modifier_worker):
    """The API over in-process workers (no Ray), keys required (``TEST_KEY``)."""
    from cogumi.serve.api import create_app
    from cogumi.serve.auth import digest
    from cogumi.serve.config import ServeConfig

    cfg = ServeConfig.model_validate({"auth": "keys", "max_tokens_limit": 256,
                                      "rate_limit": {"requests_per_minute": 6000, "burst": 1000}})
    app = create_app(make_service(base_worker, modifier_worker), cfg, [digest(TEST_KEY)])
    server = ApiServer(app).start()
    yield server
    server.stop()


class FakeClient:
    """A model client that answers at once (or slowly, stoppable): the API layer without a model."""

    def __init__(self, seconds_per_token: float = 0.0):
        self.calls, self.in_flight, self.delay = 0, 0, seconds_per_token

    def _answer(self, req: dict, n: int, finish: str = "stop") -> dict:
        return {"text": "ok " * n, "finish_reason": finish, "model": "fake", "backend": "fake", "latency_s": 0.0,
                "logprobs": None, "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n},
                "adapter": req.get("adapter"), "switch_ms": 0.0}

    def _work(self, req: dict, stop) -> dict:
        self.calls += 1
        self.in_flight += 1
        try:
            n = 0
            while n < req["params"]["max_tokens"] and not stop.is_set():
                time.sleep(self.delay)
                n += 1
            return self._answer(req, n, "cancelled" if stop.is_set() else "length")
        finally:
            self.in_flight -= 1

    async def generate(self, req: dict) -> dict:
        from cogumi.serve.streaming import call_in_thread

        return await call_in_thread(lambda stop: self._work(req, stop))

    async def stream(self, req: dict):
        answer = await self.generate(req)
        for word in answer["text"].split(" "):
            yield {"text": word + " "}
        yield {"done": True, **answer}


def fake_app(client: FakeClient | None = None, keys: list[str] | None = (TEST_KEY,), **serve: object):
    """The API over a :class:`FakeClient` (pre-routing, no modifiers); ``keys=None`` leaves it open."""
    from cogumi.serve.api import create_app
    from cogumi.serve.auth import digest
    from cogumi.serve.config import RoutingSettings, ServeConfig
    from cogumi.route.builtin import CascadeRouter
    from cogumi.serve.service import ChatService

    cfg = ServeConfig.model_validate({"auth": "keys", "max_tokens_limit": 256,
                                      "rate_limit": {"requests_per_minute": 60000, "burst": 10000}} | serve)
    service = ChatService(client or FakeClient(), None, [], CascadeRouter(0.8, needs_base_answer=False),
                          RoutingSettings(mode="pre"))
    return create_app(service, cfg, None if keys is None else [digest(k) for k in keys])
