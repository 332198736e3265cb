"""A real local OpenAI-compatible HTTP server for tests, with fault injection.

It stands in for paid APIs (teachers, judges, reference models): requests go over
real HTTP through the ``openai`` client to uvicorn, and answers come from a real
:class:`~cogumi.models.inference.InferenceBackend` (the embedded SmolLM2 by default).

Faults are queued per test: ``server.faults.extend(["429", "500", "garbage", "timeout"])``
makes the next requests fail in that order before normal service resumes. ``"ok"`` serves one
request normally (to place a later fault), ``"hold"`` parks a request until ``server.release``
is set (``server.holding`` is set while one waits).

Billing, as a paid API would: ``server.paid`` lists every answer the server generated, with its
usage, whether or not the client was still there to read it (a request the client timed out on
is paid). A request whose client disconnected before generation started (a killed driver while
the request was held) is dropped unanswered and unpaid, as vLLM and llama.cpp's server do; it
is listed in ``server.dropped``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections import deque
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from cogumi.models.inference import InferenceBackend, SamplingParams


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalOpenAIServer:
    """uvicorn in a background thread serving /v1/chat/completions, /v1/completions, /v1/models."""

    def __init__(self, backend: InferenceBackend, model_name: str = "local-teacher", retry_after_s: float = 0.2):
        self.backend, self.model_name, self.retry_after_s = backend, model_name, retry_after_s
        self.faults: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.paid: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []
        self.holding, self.release = threading.Event(), threading.Event()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._lock = threading.Lock()
        self.app = self._build_app()
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> LocalOpenAIServer:
        self._thread.start()
        deadline = time.time() + 30
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("local OpenAI server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def _next_fault(self) -> str | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def _fault(self, fault: str | None) -> Any | None:
        if fault == "429":
            return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit_error"}}, status_code=429,
                                headers={"Retry-After": str(self.retry_after_s)})
        if fault == "500":
            return JSONResponse({"error": {"message": "internal error", "type": "server_error"}}, status_code=500)
        if fault == "garbage":
            return PlainTextResponse("<html>not json</html>", status_code=200, media_type="application/json")
        if fault == "timeout":
            time.sleep(5)
        return None

    async def _hold(self, request: Request, body: dict[str, Any]) -> bool:
        """Park the request until ``release``; False when its client went away meanwhile (dropped, unpaid)."""
        self.holding.set()
        while not self.release.is_set():
            if await request.is_disconnected():
                break
            await asyncio.sleep(0.05)
        if await request.is_disconnected():
            self.dropped.append(body)
            return False
        return True

    def _bill(self, body: dict[str, Any], gen) -> None:
        self.paid.append({"call": call_id(body), "prompt_tokens": gen.usage.prompt_tokens,
                          "completion_tokens": gen.usage.completion_tokens})

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        def models():
            return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "cogumi-test"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.requests.append(body)
            kind = self._next_fault()
            if kind == "hold" and not await self._hold(request, body):
                return PlainTextResponse("", status_code=499)  # nobody is listening
            fault = self._fault(kind)
            if fault is not None:
                return fault
            params = _params(body)
            with self._lock:
                gen = self.backend.chat(body["messages"], params)
            self._bill(body, gen)
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": gen.text},
                                      "finish_reason": gen.finish_reason}
            if params.logprobs and gen.logprobs is not None:
                choice["logprobs"] = {"content": [
                    {"token": t.token, "logprob": t.logprob, "bytes": None,
                     "top_logprobs": [{"token": k, "logprob": v, "bytes": None} for k, v in t.top.items()]}
                    for t in gen.logprobs]}
            return _envelope("chat.completion", self.model_name, choice, gen)

        @app.post("/v1/completions")
        async def completions(request: Request):
            body = await request.json()
            self.requests.append(body)
            kind = self._next_fault()
            if kind == "hold" and not await self._hold(request, body):
                return PlainTextResponse("", status_code=499)
            fault = self._fault(kind)
            if fault is not None:
                return fault
            with self._lock:
                gen = self.backend.complete(body["prompt"], _params(body))
            self._bill(body, gen)
            choice = {"index": 0, "text": gen.text, "finish_reason": gen.finish_reason, "logprobs": None}
            return _envelope("text_completion", self.model_name, choice, gen)

        return app


def call_id(body: dict[str, Any]) -> str:
    """What makes two requests the same call (the same bill twice): the body without volatile fields."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _params(body: dict[str, Any]) -> SamplingParams:
    stop = body.get("stop") or []
    return SamplingParams(max_tokens=int(body.get("max_tokens") or 64), temperature=float(body.get("temperature", 0.0)),
                          top_p=float(body.get("top_p", 1.0)), seed=body.get("seed"),
                          stop=[stop] if isinstance(stop, str) else list(stop),
                          logprobs=bool(body.get("logprobs")), top_logprobs=int(body.get("top_logprobs") or 0),
                          response_format=body.get("response_format"))


def _envelope(obj: str, model: str, choice: dict[str, Any], gen) -> dict[str, Any]:
    return {"id": f"cmpl-{int(time.time() * 1e6)}", "object": obj, "created": int(time.time()), "model": model,
            "choices": [choice], "usage": {"prompt_tokens": gen.usage.prompt_tokens,
                                           "completion_tokens": gen.usage.completion_tokens,
                                           "total_tokens": gen.usage.total_tokens}}
