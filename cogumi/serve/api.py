"""The HTTP face of the router: an OpenAI-compatible FastAPI app plus the chat page.

:func:`create_app` builds the app over a :class:`~cogumi.serve.service.ChatService`;
the Serve ``Router`` deployment uses it as its ingress, tests can run it alone.
Endpoints: ``/v1/chat/completions``, ``/v1/completions`` (both with SSE streaming),
``/v1/models``, ``/health``, ``/ready`` and the chat page at ``/``. Every error is
an OpenAI error object; keys are checked in constant time and never logged, and a
client that keeps sending wrong keys is made to wait (429). ``/ready`` says only
whether the system is ready unless the caller holds a key. The app runs behind
:class:`~cogumi.serve.guard.RequestGuard` (body limit, path check, and cancelling the
request, hence its generation, when the client disconnects).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cogumi.models.inference import SamplingParams
from cogumi.serve.auth import AuthFailures, RateLimiter, check_bearer, client_key, key_id
from cogumi.serve.config import ServeConfig
from cogumi.serve.guard import RequestGuard
from cogumi.serve.metrics import ServeMetrics
from cogumi.serve.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    error_body,
    error_response,
    new_id,
)
from cogumi.serve.service import ChatService, Outcome
from cogumi.serve.streaming import primed, sse
from cogumi.serve.worker import RequestError

log = logging.getLogger("cogumi.serve")


class ApiError(Exception):
    """An error answered in the OpenAI format."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers


def as_request_error(exc: BaseException) -> RequestError | None:
    """The :class:`RequestError` behind ``exc`` (also when Ray wrapped it in a task error)."""
    for candidate in (exc, getattr(exc, "cause", None), exc.__cause__):
        if isinstance(candidate, RequestError):
            return candidate
    return None


def create_app(service: ChatService, cfg: ServeConfig, key_digests: list[str] | None,
               metrics: ServeMetrics | None = None,
               ready: Callable[[], Awaitable[dict[str, Any]]] | None = None) -> FastAPI:
    """Build the API.

    Args:
        service: routes and answers requests.
        cfg: the serve section (limits, names, chat page switch).
        key_digests: SHA-256 digests of accepted keys; None leaves the API open.
        metrics: where request metrics go (default: local counters only).
        ready: async readiness probe of the model deployments (default: always ready).

    Returns:
        The FastAPI application.
    """
    app = FastAPI(title="Cogumi", version="0.1.0", description="OpenAI-compatible API of a routed Cogumi system")
    metrics = metrics or ServeMetrics()
    limiter = RateLimiter(cfg.rate_limit.requests_per_minute, cfg.rate_limit.burst)
    brake = AuthFailures(cfg.auth_failures.free_attempts, cfg.auth_failures.base_delay_s,
                         cfg.auth_failures.max_delay_s)

    # ------------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.code, exc.param, exc.headers)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        err = as_request_error(exc) or exc
        return error_response(err.status, err.message, err.code, err.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request", "type": ""}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        if first.get("type") == "json_invalid":
            return error_response(400, "the request body is not valid JSON", "invalid_json")
        msg = f"{'.'.join(loc) or 'body'}: {first.get('msg')}" + (f" (+{len(errs) - 1} more)" if len(errs) > 1 else "")
        return error_response(400, msg, "invalid_value", ".".join(loc) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), None, None, dict(exc.headers or {}) or None)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        rerr = as_request_error(exc)
        if rerr is not None:
            return error_response(rerr.status, rerr.message, rerr.code, rerr.param)
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error; the server logged the details", "internal_error")

    @app.middleware("http")
    async def _log_and_count(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        ms = (time.perf_counter() - t0) * 1000
        caller = getattr(request.state, "caller", "-")
        route = response.headers.get("x-cogumi-route", "-")
        log.info("%s %r %s %.1fms caller=%s route=%s", request.method, request.url.path[:200],
                 response.status_code, ms, caller, route)
        endpoint = getattr(request.scope.get("route"), "path", None) or "unmatched"  # a template, never the path
        if endpoint.startswith("/v1/") or endpoint == "unmatched":
            metrics.request(endpoint.replace(":path}", "}"), response.status_code, route, ms)
        return response

    # outermost: sees the raw request before FastAPI reads or parses anything
    app.add_middleware(RequestGuard, max_body_bytes=cfg.max_request_bytes,
                       on_reject=lambda status: metrics.request("rejected", status, "-", 0.0))

    # ------------------------------------------------------------------ auth

    def authenticate(request: Request) -> str | None:
        """The caller's name (key id), or None without a valid key.

        Raises:
            ApiError: 429 while this client is braked for earlier wrong keys.
        """
        host = request.client.host if request.client else None
        if key_digests is None:
            return "open-" + (host or "local")
        client = client_key(host)
        header = request.headers.get("authorization")
        wait = brake.blocked_for(client)
        if wait > 0:
            raise ApiError(429, f"too many invalid API keys from this client; retry in {wait:.0f}s",
                           "too_many_auth_failures", headers={"Retry-After": str(max(1, round(wait)))})
        match = check_bearer(header, key_digests)
        if match is None:
            if header:
                delay = brake.failed(client)
                if delay:
                    log.warning("client %s braked for %.0fs after repeated invalid API keys", client, delay)
            return None
        brake.succeeded(client)
        return key_id(match)

    async def caller(request: Request) -> str:
        who = authenticate(request)
        if who is None:
            missing = not request.headers.get("authorization")
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'" if missing
                           else "invalid API key", "invalid_api_key")
        request.state.caller = who
        return who

    async def limited(request: Request, who: str = Depends(caller)) -> str:
        wait = limiter.acquire(who)
        if wait > 0:
            raise ApiError(429, f"rate limit reached for {who}; retry in {wait:.1f}s", "rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, round(wait)))})
        return who

    # ------------------------------------------------------------------ pages and probes

    if cfg.chat_page:
        page = resources.files("cogumi.serve").joinpath("data/chat.html").read_text()

        @app.get("/", response_class=HTMLResponse, include_in_schema=False)
        async def chat_page() -> HTMLResponse:
            return HTMLResponse(page.replace("{{MODEL}}", service.served_name))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready_probe(request: Request) -> JSONResponse:
        """Readiness; the deployments, models and counters only for a caller with a key."""
        try:
            who = authenticate(request)
        except ApiError:  # braked: answer like an anonymous probe, without checking the key
            who = None
        state = await ready() if ready else {"ready": True}
        code = 200 if state.get("ready") else 503
        if who is None:
            return JSONResponse({"ready": bool(state.get("ready"))}, status_code=code)
        body = {**state, "models": service.model_ids(), "router": getattr(service.router, "name", "?"),
                "auth": "keys" if key_digests is not None else "open", "counters": metrics.snapshot()}
        return JSONResponse(body, status_code=code)

    @app.get("/v1/models")
    async def list_models(who: str = Depends(caller)) -> dict[str, Any]:
        return {"object": "list", "data": [_model(m) for m in service.model_ids()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, who: str = Depends(caller)) -> dict[str, Any]:
        if model_id not in service.model_ids():
            raise ApiError(404, f"the model '{model_id[:100]}' does not exist", "model_not_found", "model")
        return _model(model_id)

    # ------------------------------------------------------------------ completions

    def sampling(req: ChatCompletionRequest | CompletionRequest, logprobs: bool, top: int) -> SamplingParams:
        wanted = req.wanted_tokens() or min(cfg.default_max_tokens, cfg.max_tokens_limit)
        if wanted > cfg.max_tokens_limit:
            raise ApiError(400, f"max_tokens {wanted} is above this server's limit of {cfg.max_tokens_limit}",
                           "invalid_value", "max_tokens")
        wanted_format = getattr(req, "response_format", None)  # chat requests only
        fmt = wanted_format.model_dump(exclude_none=True) if wanted_format else None
        if fmt and fmt["type"] == "text":
            fmt = None
        return SamplingParams(max_tokens=wanted, temperature=req.temperature, top_p=req.top_p, seed=req.seed,
                              stop=list(req.stop or []), logprobs=logprobs, top_logprobs=top, response_format=fmt)

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request, who: str = Depends(limited)):
        params = sampling(req, req.logprobs, max(1, req.top_logprobs or 0) if req.logprobs else 0)
        target = _resolve(service, req.model, request)
        messages = [m.plain() for m in req.messages]
        rid = new_id("chatcmpl")
        if not req.stream:
            out = await service.answer("chat", messages, params, target)
            _record(metrics, out)
            return JSONResponse(chat_response(rid, req.model, out.full_answer(), out.transparency(),
                                              req.top_logprobs or 0),
                                headers=_headers(out, final=True))
        out = await service.stream("chat", messages, params, target)
        first, rest = await primed(out.event_stream())  # errors before the first token become HTTP errors
        usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(_chat_sse(rid, req.model, out, first, rest, usage, metrics),
                                 media_type="text/event-stream", headers=_headers(out) | _NO_BUFFER)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request, who: str = Depends(limited)):
        params = sampling(req, req.logprobs is not None, req.logprobs or 0)
        target = _resolve(service, req.model, request)
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        rid = new_id("cmpl")
        if req.stream:
            if len(prompts) > 1:
                raise ApiError(400, "streaming takes a single prompt", "invalid_value", "prompt")
            out = await service.stream("complete", _as_messages(prompts[0]), params, target, prompts[0])
            first, rest = await primed(out.event_stream())
            return StreamingResponse(_completion_sse(rid, req.model, out, first, rest, metrics),
                                     media_type="text/event-stream", headers=_headers(out) | _NO_BUFFER)
        outs = [await service.answer("complete", _as_messages(p), params, target, p) for p in prompts]
        for out in outs:
            _record(metrics, out)
        route = outs[0].transparency() if len(outs) == 1 else {"choices": [o.transparency() for o in outs]}
        return JSONResponse(completion_response(rid, req.model, [o.full_answer() for o in outs], route),
                            headers=_headers(outs[0], final=True))

    return app


_NO_BUFFER = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "cogumi"}


def _as_messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _resolve(service: ChatService, model: str, request: Request):
    try:
        return service.resolve(model, request.headers.get("x-cogumi-route"))
    except RequestError as exc:
        raise ApiError(exc.status, exc.message, exc.code, exc.param) from None


def _record(metrics: ServeMetrics, out: Outcome) -> None:
    tokens = (out.answer or {}).get("usage", {}).get("completion_tokens", 0)
    metrics.decision(out.decision.route, out.decision.reason, tokens)


def _headers(out: Outcome, final: bool = False) -> dict[str, str]:
    d = out.decision
    h = {"X-Cogumi-Route": d.route, "X-Cogumi-Reason": d.reason, "X-Cogumi-Router": out.router,
         "X-Cogumi-Confidence": "" if d.confidence is None else f"{d.confidence:.4f}"}
    if final and "total" in out.timings:
        h["X-Cogumi-Latency-Ms"] = f"{out.timings['total']:.1f}"
    return {k: v.encode("latin-1", "replace").decode("latin-1") for k, v in h.items()}


async def _events(first: list[dict[str, Any]], rest: AsyncIterator[dict[str, Any]]):
    for ev in first:
        yield ev
    async for ev in rest:
        yield ev


async def _chat_sse(rid: str, model: str, out: Outcome, first: list, rest: AsyncIterator, usage: bool,
                    metrics: ServeMetrics) -> AsyncIterator[bytes]:
    yield sse(chat_chunk(rid, model, {"role": "assistant", "content": ""}, extra={"cogumi": out.transparency()}))
    final: dict[str, Any] = {}
    try:
        async for ev in _events(first, rest):
            if ev.get("done"):
                final = ev
            elif ev.get("text"):
                yield sse(chat_chunk(rid, model, {"content": ev["text"]}))
    except Exception as exc:  # noqa: BLE001 - reported in-stream, the response has started
        err = as_request_error(exc)
        log.warning("stream %s failed: %s", rid, type(exc).__name__)
        yield sse(error_body(err.status if err else 500, err.message if err else "generation failed",
                             err.code if err else "internal_error"))
        yield sse("[DONE]")
        return
    finally:
        await rest.aclose() if hasattr(rest, "aclose") else None
    out.answer = final
    _record(metrics, out)
    yield sse(chat_chunk(rid, model, {}, final.get("finish_reason", "stop"), extra={"cogumi": out.transparency()}))
    if usage:
        yield sse({"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                   "choices": [], "usage": final.get("usage")})
    yield sse("[DONE]")


async def _completion_sse(rid: str, model: str, out: Outcome, first: list, rest: AsyncIterator,
                          metrics: ServeMetrics) -> AsyncIterator[bytes]:
    final: dict[str, Any] = {}
    try:
        async for ev in _events(first, rest):
            if ev.get("done"):
                final = ev
            elif ev.get("text"):
                yield sse(completion_chunk(rid, model, ev["text"], extra={"cogumi": out.transparency()}))
    except Exception as exc:  # noqa: BLE001
        err = as_request_error(exc)
        yield sse(error_body(err.status if err else 500, err.message if err else "generation failed",
                             err.code if err else "internal_error"))
        yield sse("[DONE]")
        return
    finally:
        await rest.aclose() if hasattr(rest, "aclose") else None
    out.answer = final
    _record(metrics, out)
    yield sse(completion_chunk(rid, model, "", final.get("finish_reason", "stop"), extra={"cogumi": out.transparency()}))
    yield sse("[DONE]")
