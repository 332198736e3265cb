"""OpenAI-compatible HTTP backend (hosted APIs, vLLM, llama.cpp server, Cogumi's own API)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from cogumi.errors import BackendError
from cogumi.models.inference.base import (
    Generation,
    Message,
    SamplingParams,
    TokenLogprob,
    Usage,
    validate_messages,
)



def request_fields(model: str, params: SamplingParams) -> dict[str, Any]:
    """The sampling fields every completion request sends (chat and raw completions)."""
    kw: dict[str, Any] = {"model": model, "max_tokens": params.max_tokens,
                          "temperature": params.temperature, "top_p": params.top_p}
    if params.seed is not None:
        kw["seed"] = params.seed
    if params.stop:
        kw["stop"] = params.stop
    return kw


def chat_request_fields(model: str, params: SamplingParams) -> dict[str, Any]:
    """A ``/v1/chat/completions`` request's fields except ``messages`` (online and batch calls share it)."""
    kw = request_fields(model, params)
    if params.logprobs:
        kw["logprobs"] = True
        if params.top_logprobs:
            kw["top_logprobs"] = params.top_logprobs
    if params.response_format:
        kw["response_format"] = params.response_format
    return kw

class OpenAIBackend:
    """Talks to ``base_url`` with the ``openai`` client.

    Args:
        base_url: e.g. ``http://127.0.0.1:8080/v1``.
        model: served model name.
        api_key_env: environment variable with the key (``"none"`` is sent when unset,
            which local servers accept).
        timeout_s, max_retries: passed to the client (it retries 429/5xx with backoff).
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 2):
        import openai

        key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.base_url, self.model_name = base_url, model
        self._openai = openai
        self.client = openai.OpenAI(base_url=base_url, api_key=key or "none", timeout=timeout_s,
                                    max_retries=max_retries)

    def _kwargs(self, params: SamplingParams) -> dict[str, Any]:
        return request_fields(self.model_name, params)

    def _call(self, fn, **kw):
        try:
            return fn(**kw)
        except self._openai.APIConnectionError as exc:
            raise BackendError(f"cannot reach the OpenAI-compatible endpoint ({exc.__class__.__name__}: "
                               f"{exc.__cause__ or exc})", self.base_url,
                               "check that the server is running and base_url (including /v1) is right") from None
        except self._openai.AuthenticationError:
            raise BackendError("the endpoint rejected the API key (401)", self.base_url,
                               "set the environment variable named by api_key_env") from None
        except self._openai.APIStatusError as exc:
            raise BackendError(f"the endpoint answered HTTP {exc.status_code}: {str(exc.message)[:300]}",
                               f"{self.base_url} model={self.model_name}",
                               "check the model name and request limits") from None

    def chat(self, messages: list[Message], params: SamplingParams | None = None) -> Generation:
        """Chat completion, with token logprobs when ``params.logprobs``."""
        params = params or SamplingParams()
        validate_messages(messages)
        kw = chat_request_fields(self.model_name, params)
        t0 = time.perf_counter()
        resp = self._call(self.client.chat.completions.create, messages=messages, **kw)
        latency = time.perf_counter() - t0
        choice = _first_choice(resp, self.base_url)
        logprobs = None
        if params.logprobs and getattr(choice, "logprobs", None) and choice.logprobs.content:
            logprobs = [TokenLogprob(t.token, t.logprob, {a.token: a.logprob for a in (t.top_logprobs or [])})
                        for t in choice.logprobs.content]
        return Generation(choice.message.content or "", choice.finish_reason or "stop",
                          _usage(resp), self.model_name, self.name, latency, logprobs)

    def complete(self, prompt: str, params: SamplingParams | None = None) -> Generation:
        """Text completion (``/v1/completions``)."""
        params = params or SamplingParams()
        kw = self._kwargs(params)
        if params.logprobs:
            kw["logprobs"] = max(params.top_logprobs, 1)
        t0 = time.perf_counter()
        resp = self._call(self.client.completions.create, prompt=prompt, **kw)
        latency = time.perf_counter() - t0
        choice = _first_choice(resp, self.base_url)
        logprobs = None
        lp = getattr(choice, "logprobs", None)
        if params.logprobs and lp and lp.tokens:
            tops = lp.top_logprobs or [{} for _ in lp.tokens]
            logprobs = [TokenLogprob(tok, float(p), dict(top or {}))
                        for tok, p, top in zip(lp.tokens, lp.token_logprobs, tops)]
        return Generation(choice.text or "", choice.finish_reason or "stop", _usage(resp),
                          self.model_name, self.name, latency, logprobs)

    def stream_chat(self, messages: list[Message], params: SamplingParams | None = None) -> Iterator[str]:
        """Yield text deltas from a streamed chat completion."""
        params = params or SamplingParams()
        validate_messages(messages)
        stream = self._call(self.client.chat.completions.create, messages=messages, stream=True,
                            **self._kwargs(params))
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()


def _first_choice(resp: Any, where: str) -> Any:
    if not getattr(resp, "choices", None):
        raise BackendError("the endpoint answered without choices (not an OpenAI-compatible reply)",
                           where, "check that base_url points at an OpenAI-compatible /v1 API")
    return resp.choices[0]


def _usage(resp: Any) -> Usage:
    u = getattr(resp, "usage", None)
    return Usage(getattr(u, "prompt_tokens", 0) or 0, getattr(u, "completion_tokens", 0) or 0)
