"""One inference interface for teacher, judge, benchmarks, router and serving.

Backends (OpenAI-compatible HTTP, transformers(+PEFT), llama.cpp) implement
:class:`InferenceBackend`: ``chat`` and ``complete`` with sampling parameters,
token logprobs where the backend gives them, and usage counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy decoding.

    Attributes:
        response_format: OpenAI-style ``{"type": "json_schema", "json_schema": {...}}``
            or ``{"type": "json_object"}``; honoured where the backend supports it.
        logprobs: return the chosen tokens' logprobs; ``top_logprobs`` alternatives each.
    """

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    stop: list[str] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    response_format: dict[str, Any] | None = None


@dataclass
class TokenLogprob:
    """One generated token with its logprob and the top alternatives."""

    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass
class Usage:
    """Token counts of one call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Generation:
    """The result of one chat or completion call."""

    text: str
    finish_reason: str
    usage: Usage
    model: str
    backend: str
    latency_s: float
    logprobs: list[TokenLogprob] | None = None

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second of wall time (prompt processing included)."""
        return self.usage.completion_tokens / self.latency_s if self.latency_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"text": self.text, "finish_reason": self.finish_reason, "model": self.model,
                "backend": self.backend, "latency_s": round(self.latency_s, 4),
                "usage": {"prompt_tokens": self.usage.prompt_tokens,
                          "completion_tokens": self.usage.completion_tokens,
                          "total_tokens": self.usage.total_tokens},
                "logprobs": [vars(t) for t in self.logprobs] if self.logprobs is not None else None}


@runtime_checkable
class InferenceBackend(Protocol):
    """What every backend offers."""

    name: str
    model_name: str

    def chat(self, messages: list[Message], params: SamplingParams | None = None) -> Generation:
        """Answer a conversation with the model's chat template applied."""
        ...

    def complete(self, prompt: str, params: SamplingParams | None = None) -> Generation:
        """Continue raw text (no chat template)."""
        ...

    def stream_chat(self, messages: list[Message], params: SamplingParams | None = None) -> Iterator[str]:
        """Yield the answer's text in pieces as they are generated."""
        ...

    def close(self) -> None:
        """Free the model or connection."""
        ...


def validate_messages(messages: list[Message]) -> None:
    """Check the chat message shape once for every backend.

    Raises:
        ValueError: empty list, unknown role or non-string content.
    """
    if not messages:
        raise ValueError("messages must contain at least one message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}] needs role system, user or assistant; got {m!r:.80}")
        if not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}].content must be a string")
