"""OpenAI-compatible request/response shapes and the OpenAI error format.

Requests are validated field by field (types and ranges); fields this server does
not know are ignored, as most OpenAI-compatible servers do, so clients that send
extra options keep working. ``presence_penalty``/``frequency_penalty``/``user`` are
validated and accepted but do not change generation.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class TextPart(_Request):
    """One part of a multi-part message content; only text is served."""

    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    """One message; ``developer`` is read as ``system``; content may be a list of text parts."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = Field(None, max_length=64)

    def plain(self) -> dict[str, str]:
        """``{"role", "content"}`` with parts joined and ``developer`` mapped to ``system``."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(_Request):
    include_usage: bool = False


class ResponseFormat(_Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class _Sampling(_Request):
    model: str = Field(..., min_length=1, max_length=200)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1, description="only one choice per request is served")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    user: str | None = Field(None, max_length=256)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(..., min_length=1, max_length=512)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _shape(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        if all(not m.plain()["content"].strip() for m in self.messages):
            raise ValueError("messages are all empty")
        if self.messages[-1].role == "assistant":
            raise ValueError("the last message must be from the user (or system), not the assistant")
        return self

    def wanted_tokens(self) -> int | None:
        """``max_completion_tokens`` or ``max_tokens`` (None: the server default)."""
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    """``POST /v1/completions`` (one prompt, or a list of up to 8 answered in turn)."""

    prompt: str | list[str] = Field(...)
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, v: str | list[str]) -> str | list[str]:
        items = [v] if isinstance(v, str) else v
        if not items or len(items) > 8:
            raise ValueError("prompt must be a string or a list of 1 to 8 strings")
        if any(not p.strip() for p in items):
            raise ValueError("prompt must not be empty")
        return v

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v: bool) -> bool:
        if v:
            raise ValueError("echo is not supported")
        return v

    def wanted_tokens(self) -> int | None:
        return self.max_tokens


# ---------------------------------------------------------------- responses


def new_id(prefix: str) -> str:
    """An OpenAI-style id such as ``chatcmpl-<hex>``."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def chat_response(rid: str, model: str, answer: dict[str, Any], route: dict[str, Any],
                  top_n: int = 0) -> dict[str, Any]:
    """A ``chat.completion`` object; ``cogumi`` carries the routing transparency.

    ``top_n`` alternatives per token are kept (the backend may have computed more).
    """
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": answer["text"]},
                              "finish_reason": answer["finish_reason"], "logprobs": None}
    if answer.get("logprobs") is not None:
        choice["logprobs"] = {"content": [
            {"token": t["token"], "logprob": t["logprob"], "bytes": list(t["token"].encode()),
             "top_logprobs": [{"token": k, "logprob": v, "bytes": list(k.encode())}
                              for k, v in list(t["top"].items())[:top_n]]}
            for t in answer["logprobs"]]}
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [choice], "usage": answer["usage"], "system_fingerprint": None, "cogumi": route}


def completion_response(rid: str, model: str, answers: list[dict[str, Any]], route: dict[str, Any]) -> dict:
    """A ``text_completion`` object with one choice per prompt."""
    choices = []
    for i, a in enumerate(answers):
        lp = None
        if a.get("logprobs") is not None:
            lp = {"tokens": [t["token"] for t in a["logprobs"]],
                  "token_logprobs": [t["logprob"] for t in a["logprobs"]],
                  "top_logprobs": [t["top"] for t in a["logprobs"]], "text_offset": []}
        choices.append({"index": i, "text": a["text"], "finish_reason": a["finish_reason"], "logprobs": lp})
    usage = {k: sum(a["usage"][k] for a in answers) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage, "cogumi": route}


def chat_chunk(rid: str, model: str, delta: dict[str, Any], finish: str | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a stream."""
    chunk = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    return chunk | (extra or {})


def completion_chunk(rid: str, model: str, text: str, finish: str | None = None,
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One streamed ``text_completion`` chunk."""
    chunk = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
             "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}
    return chunk | (extra or {})


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
               415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
               500: "server_error", 503: "server_error"}


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error object ``{"error": {message, type, param, code}}``."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An OpenAI-format error as a JSON response."""
    return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)
