"""A metered endpoint: inference backend + response cache + global rate limit + retries + cost.

Teachers and the judge both call models through :class:`MeteredEndpoint`, which
goes through the one inference interface (:func:`cogumi.models.inference.make_backend`)
with the OpenAI client's own retries switched off (``max_retries=0``) so that
:mod:`cogumi.endpoints.retry` owns the policy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from cogumi.config_base import ModelConfig
from cogumi.endpoints.cache import ResponseCache, cache_key
from cogumi.endpoints.config import RetryConfig
from cogumi.endpoints.retry import Failure, RetriesExhausted, call_with_retries
from cogumi.errors import BackendError
from cogumi.models.inference import Generation, Message, SamplingParams, make_backend


@dataclass
class CallResult:
    """One answered call with its bill.

    ``cost_usd`` is everything the call may have cost: the answer's tokens plus, for each
    attempt that timed out on the client (``unanswered``; the server may have answered and
    billed it anyway), its prompt tokens at the input price. That estimated part is
    ``estimated_usd``.
    """

    generation: Generation
    cached: bool
    attempts: int
    cost_usd: float
    unanswered: int = 0
    estimated_usd: float = 0.0
    batch_id: str | None = None


@dataclass
class BatchBilling:
    """What an endpoint in batch mode needs to bill the answers its batches put in the cache.

    Attributes:
        batch_ids: the batches of this run (a cache entry from one of them is billed, not "cached").
        failed: cache key -> why the batch API gave no answer for it (the row becomes an error).
        price_in, price_out: batch USD per million input / output tokens.
    """

    batch_ids: frozenset[str] = frozenset()
    failed: dict[str, str] = field(default_factory=dict)
    price_in: float = 0.0
    price_out: float = 0.0

    def cost(self, gen: Generation) -> float:
        return (gen.usage.prompt_tokens * self.price_in + gen.usage.completion_tokens * self.price_out) / 1e6


def endpoint_id(cfg: ModelConfig) -> str:
    """What identifies the answering endpoint in the cache key."""
    where = cfg.base_url if cfg.backend == "openai" else cfg.model
    return f"{cfg.backend}|{where}|{cfg.gguf_file or ''}|{cfg.adapter or ''}"


def estimate_prompt_tokens(messages: list[Message]) -> int:
    """Prompt tokens of ``messages`` without a tokenizer: ~4 characters a token plus a few per message."""
    return sum(len(m.get("content", "")) for m in messages) // 4 + 8 * len(messages)


def estimate_tokens(messages: list[Message], max_tokens: int) -> int:
    """Tokens to reserve before a call: the estimated prompt plus the answer cap."""
    return estimate_prompt_tokens(messages) + max_tokens


class MeteredEndpoint:
    """Calls one model with caching, rate limiting, retries and token/dollar accounting.

    Args:
        name: limiter key and report name (a teacher name or ``judge``).
        model: where the model is; its ``max_retries`` is forced to 0.
        price_in, price_out: USD per million input / output tokens.
        retry: the retry policy.
        limiter: a :class:`~cogumi.endpoints.limiter.LocalLimiter` or ``RemoteLimiter`` (already configured).
        cache: the shared response cache (None = no caching).
        batch: in batch mode, this run's batches (their answers are in ``cache``); a call whose
            answer is not there goes online (e.g. the judge's re-asks with another seed).
    """

    def __init__(self, name: str, model: ModelConfig, price_in: float, price_out: float, retry: RetryConfig,
                 limiter, cache: ResponseCache | None, batch: BatchBilling | None = None):
        self.name, self.retry, self.limiter, self.cache, self.batch = name, retry, limiter, cache, batch
        self.model = model.model_copy(update={"max_retries": 0})
        self.price_in, self.price_out = price_in, price_out
        self._backend = None
        self._lock = threading.Lock()

    @property
    def backend(self):
        with self._lock:
            if self._backend is None:
                self._backend = make_backend(self.model)
            return self._backend

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for this many tokens at this endpoint's prices."""
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1e6

    def key(self, messages: list[Message], params: SamplingParams) -> str:
        """The response-cache key of this call (also its ``custom_id`` in a batch file)."""
        return cache_key(endpoint_id(self.model), self.model.model, messages, params)

    def chat(self, messages: list[Message], params: SamplingParams) -> CallResult:
        """Answer from the cache, or call the model (rate limited, retried), caching the answer as it arrives.

        In batch mode an answer one of this run's batches put in the cache is billed at the batch
        price (``cached`` False, ``batch_id`` set), and a row the batch API failed raises.

        Raises:
            RetriesExhausted: the call failed fatally or on every attempt (with the estimated cost
                of its unanswered attempts).
        """
        key = self.key(messages, params)
        if self.cache is not None and (entry := self.cache.lookup(key)) is not None:
            hit, extra = entry
            if self.batch is not None and extra.get("batch_id") in self.batch.batch_ids:
                return CallResult(hit, False, 1, self.batch.cost(hit), batch_id=extra["batch_id"])
            return CallResult(hit, True, 0, 0.0)
        if self.batch is not None and key in self.batch.failed:
            raise RetriesExhausted([Failure("fatal", f"batch API: {self.batch.failed[key]}")])
        reserved = estimate_tokens(messages, params.max_tokens)
        unanswered = 0

        def once() -> Generation:
            self.limiter.acquire(self.name, reserved)
            gen = self.backend.chat(messages, params)
            if not isinstance(gen.text, str):
                raise BackendError("the endpoint answered without text", self.name, "check the endpoint")
            if self.cache is not None:
                self.cache.put(key, gen)  # paid for: on disk before anything else can fail or be killed
            return gen

        def on_failure(failure: Failure) -> None:
            nonlocal unanswered
            unanswered += failure.maybe_billed
            if failure.kind == "rate_limit":
                self.limiter.pause(self.name, failure.retry_after or self.retry.base_s)

        try:
            gen, attempts = call_with_retries(once, self.retry, on_failure)
        except RetriesExhausted as exc:
            exc.unanswered = unanswered
            exc.estimated_usd = self.cost(unanswered * estimate_prompt_tokens(messages), 0)
            raise
        self.limiter.settle(self.name, reserved, gen.usage.total_tokens)
        # an unanswered attempt sent the same prompt: the answer's own count is the best estimate
        estimated = self.cost(unanswered * gen.usage.prompt_tokens, 0)
        return CallResult(gen, False, attempts,
                          self.cost(gen.usage.prompt_tokens, gen.usage.completion_tokens) + estimated,
                          unanswered, estimated)

    def close(self) -> None:
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None
