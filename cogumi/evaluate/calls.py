"""Model calls for evaluation: one backend per role, retries, token accounting, no exceptions per row.

Every call goes through the one inference interface
(:func:`cogumi.models.inference.make_backend`). A call that keeps failing becomes
an error string on its row; configuration problems (a model that cannot load)
still raise, because no row could succeed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from cogumi.config_base import ModelConfig
from cogumi.endpoints.config import RetryConfig
from cogumi.endpoints.retry import RetriesExhausted, call_with_retries
from cogumi.errors import ModelLoadError
from cogumi.models.inference import Message, SamplingParams, make_backend


@dataclass
class CallOutcome:
    """What one (possibly retried) call produced."""

    text: str | None
    error: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 0
    finish_reason: str | None = None


class Caller:
    """A model behind the inference interface, called with retries.

    Args:
        model: which model (a JSON string is accepted, as Ray actors receive it).
        attempts: tries per call before the row gets an error (transient failures only: an HTTP 4xx
            other than 408/409/429 is not retried).
        backoff_s: ceiling of the first backoff, doubled each time (full jitter).
        backend: an already built backend to use instead of ``make_backend(model)``.
    """

    def __init__(self, model: ModelConfig | str, attempts: int = 3, backoff_s: float = 0.5, backend: Any = None):
        self.model = ModelConfig.model_validate_json(model) if isinstance(model, str) else model
        self.attempts, self.backoff_s = attempts, backoff_s
        self.policy = RetryConfig(max_attempts=attempts, base_s=backoff_s, max_s=max(backoff_s * 8, backoff_s))
        self._backend = backend

    @property
    def backend(self):
        if self._backend is None:
            self._backend = make_backend(self.model)
        return self._backend

    def chat(self, messages: list[Message], params: SamplingParams) -> CallOutcome:
        """Answer ``messages``; failures after every attempt come back as ``error``.

        Retries follow the one policy of :mod:`cogumi.endpoints.retry` (transient failures only,
        exponential backoff with full jitter from ``backoff_s``).
        """
        out = CallOutcome(None, None)
        try:
            gen, out.attempts = call_with_retries(lambda: self.backend.chat(messages, params), self.policy)
        except RetriesExhausted as exc:
            cause = exc.__cause__
            if isinstance(cause, ModelLoadError):
                raise cause from None
            out.attempts = len(exc.failures)
            out.error = f"{cause.__class__.__name__}: {str(cause)[:300]}" if cause is not None else str(exc)[:300]
            return out
        out.text, out.finish_reason = gen.text, gen.finish_reason
        out.prompt_tokens, out.completion_tokens = gen.usage.prompt_tokens, gen.usage.completion_tokens
        out.latency_s = gen.latency_s
        return out

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def parallel_map(fn: Callable[[dict[str, Any]], dict[str, Any]], rows: list[dict[str, Any]],
                 threads: int) -> list[dict[str, Any]]:
    """``fn`` over rows, ``threads`` at a time (1 = in order, in this thread)."""
    if threads <= 1 or len(rows) <= 1:
        return [fn(r) for r in rows]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, rows))


class AnswerStep:
    """Answer each row's ``prompt`` with one model, into ``<role>_*`` columns.

    Columns written: ``<role>_answer``, ``<role>_error``, ``<role>_prompt_tokens``,
    ``<role>_completion_tokens``, ``<role>_latency_s``, ``<role>_calls``.
    """

    def __init__(self, model: ModelConfig | str, role: str, max_tokens: int, system_prompt: str | None = None,
                 attempts: int = 3, threads: int = 1, temperature: float = 0.0, seed: int | None = 0):
        self.caller = Caller(model, attempts)
        self.role, self.system_prompt, self.threads = role, system_prompt, threads
        self.params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)

    def one(self, row: dict[str, Any]) -> dict[str, Any]:
        messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
        out = self.caller.chat(messages + [{"role": "user", "content": row["prompt"]}], self.params)
        r = self.role
        return row | {f"{r}_answer": out.text, f"{r}_error": out.error, f"{r}_prompt_tokens": out.prompt_tokens,
                      f"{r}_completion_tokens": out.completion_tokens, f"{r}_latency_s": round(out.latency_s, 4),
                      f"{r}_calls": out.attempts}

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return parallel_map(self.one, rows, self.threads)

    def close(self) -> None:
        self.caller.close()
