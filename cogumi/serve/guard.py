"""ASGI middleware in front of the API: body limit, path check, cancel on disconnect.

:class:`RequestGuard` wraps the whole FastAPI app, so it holds in Ray Serve's
Router replica as it does under a plain uvicorn:

- the body is read (and counted) before the app sees the request: more than
  ``max_body_bytes`` is a 413 whether the client sent a ``Content-Length`` or a
  chunked body, and nothing is parsed or tokenised;
- a path that is not valid UTF-8 once percent-decoded, or holds control
  characters, is a 400;
- once the body is in, the connection is watched: when the client goes away the
  app's task is cancelled, which stops the generation behind it (non-streaming
  answers, the cascade's base pass, streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cogumi.serve.schemas import error_response

log = logging.getLogger("cogumi.serve")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def bad_path(scope: Scope) -> str | None:
    """Why the request path is unacceptable, or None."""
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    try:
        path = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return "the request path is not valid UTF-8"
    if _CONTROL.search(path) or _CONTROL.search(scope.get("path", "")):
        return "the request path holds control characters"
    return None


class RequestGuard:
    """Pure ASGI middleware: bounded, pre-read bodies; 400 for bad paths; cancel on disconnect.

    Args:
        app: the application to guard.
        max_body_bytes: the largest request body accepted.
        on_reject: called with the status of each request answered here (metrics).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, on_reject: Callable[[int], None] | None = None):
        self.app, self.max_body_bytes, self.on_reject = app, max_body_bytes, on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        why = bad_path(scope)
        if why is not None:
            await self._reject(scope, receive, send, 400, why, "invalid_path")
            return
        body = await self._read_body(receive, _content_length(scope))
        if body is None:
            await self._reject(scope, receive, send, 413, f"request body larger than {self.max_body_bytes} bytes",
                               "request_too_large")
            return
        if not isinstance(body, bytes):  # the disconnect message: the client left while sending
            return
        await self._run(scope, receive, send, body)

    async def _read_body(self, receive: Receive, declared: int | None) -> bytes | Message | None:
        """The whole body; None when over the limit; the disconnect message when the client left."""
        if declared is not None and declared > self.max_body_bytes:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return message
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _run(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        gone = asyncio.Event()
        sent_body = False

        async def replay() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def watch(task: asyncio.Task) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            await asyncio.sleep(0)  # let the app see the disconnect message first
            task.cancel()

        app_task = asyncio.ensure_future(self.app(scope, replay, send))
        watcher = asyncio.ensure_future(watch(app_task))
        try:
            await app_task
        except asyncio.CancelledError:
            if not gone.is_set():  # cancelled from outside (Serve cancelled the request): pass it on
                app_task.cancel()
                raise
            log.info("%s %s: client disconnected, request cancelled", scope.get("method"), scope.get("path"))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    async def _reject(self, scope: Scope, receive: Receive, send: Send, status: int, message: str,
                      code: str) -> None:
        log.info("%s %r: %s (%d)", scope.get("method"), scope.get("path", "")[:100], message, status)
        if self.on_reject is not None:
            self.on_reject(status)
        await error_response(status, message, code)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared body size; a malformed header counts as too large."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else 1 << 62
    return None
