"""Routing orchestration between the base model and the modifiers (no HTTP, no Ray).

:class:`ChatService` resolves the target (manual override or automatic), runs the
router — escalation check, then the confidence cascade or a pre-route — and
calls the base / modifier through :class:`ModelClient`: Serve deployment handles
in production (:mod:`cogumi.serve.deployments`), in-process workers in tests.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from cogumi.models.inference import Generation, SamplingParams, TokenLogprob, Usage
from cogumi.serve.config import RoutingSettings, valid_domain
from cogumi.route.contract import RouteDecision, Router
from cogumi.serve.streaming import call_in_thread, iterate_in_thread
from cogumi.serve.worker import ModelWorker, RequestError, gen_request


class ModelClient(Protocol):
    """How the service reaches a model deployment (requests/answers are plain dicts)."""

    async def generate(self, req: dict[str, Any]) -> dict[str, Any]:
        """The full answer (``ModelWorker.generate``)."""
        ...

    def stream(self, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Events of ``ModelWorker.stream``."""
        ...


class LocalClient:
    """A :class:`ModelClient` over an in-process :class:`ModelWorker` (tests, benchmarks)."""

    def __init__(self, worker: ModelWorker):
        self.worker = worker

    async def generate(self, req: dict[str, Any]) -> dict[str, Any]:
        return await call_in_thread(lambda stop: self.worker.generate(req, stop))

    async def stream(self, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async for ev in iterate_in_thread(lambda stop: self.worker.stream(req, stop)):
            yield ev


@dataclass
class Target:
    """What the client asked for: ``auto`` routing, the ``base`` alone, or one ``modifier``."""

    kind: str
    modifier: str | None = None


@dataclass
class Outcome:
    """A routed answer: the decision, timings (ms) and either the answer or its event stream."""

    decision: RouteDecision
    timings: dict[str, float] = field(default_factory=dict)
    answer: dict[str, Any] | None = None
    events: AsyncIterator[dict[str, Any]] | None = None
    router: str = ""

    def full_answer(self) -> dict[str, Any]:
        """The answer that :meth:`ChatService.answer` set."""
        if self.answer is None:
            raise RuntimeError("this outcome has no full answer (it streams its events)")
        return self.answer

    def event_stream(self) -> AsyncIterator[dict[str, Any]]:
        """The events that :meth:`ChatService.stream` set."""
        if self.events is None:
            raise RuntimeError("this outcome has no event stream (it was answered in full)")
        return self.events

    def transparency(self) -> dict[str, Any]:
        """The ``cogumi`` block returned with every answer."""
        return {**self.decision.as_dict(), "router": self.router,
                "latency_ms": {k: round(v, 2) for k, v in self.timings.items()}}


class ChatService:
    """Routes requests between the base model and the modifiers.

    Args:
        base: client of the base model deployment.
        modifiers: client of the modifier deployment, or None when none is deployed.
        modifier_names: the domains the modifier deployment can serve.
        router: a :class:`~cogumi.route.contract.Router`.
        routing: the routing settings (escalation switch).
        served_name: the public model name (``cogumi``).
    """

    def __init__(self, base: ModelClient, modifiers: ModelClient | None, modifier_names: list[str],
                 router: Router, routing: RoutingSettings, served_name: str = "cogumi"):
        self.base, self.modifiers = base, modifiers
        self.modifier_names = sorted(modifier_names) if modifiers is not None else []
        self.router, self.routing, self.served_name = router, routing, served_name

    # ------------------------------------------------------------------ targets

    def model_ids(self) -> list[str]:
        """The model names ``/v1/models`` lists."""
        return [self.served_name, f"{self.served_name}/base"] + [f"{self.served_name}/{d}"
                                                               for d in self.modifier_names]

    def resolve(self, model: str, header: str | None = None) -> Target:
        """The target for a request's ``model`` and optional ``X-Cogumi-Route`` header (which wins).

        Raises:
            RequestError: 404 for an unknown model or modifier, 400 for a malformed name.
        """
        if header is not None and header.strip():
            return self._named(header.strip().lower(), "X-Cogumi-Route header")
        name = model.strip()
        if name in (self.served_name, f"{self.served_name}/auto"):
            return Target("auto")
        prefix = f"{self.served_name}/"
        if name.startswith(prefix):
            return self._named(name[len(prefix):], "model")
        raise RequestError(f"the model '{name[:100]}' does not exist; this server serves "
                           f"{', '.join(self.model_ids())}", 404, "model_not_found", "model")

    def _named(self, route: str, where: str) -> Target:
        if route == "auto":
            return Target("auto")
        if route == "base":
            return Target("base")
        if not valid_domain(route):
            raise RequestError(f"'{route[:100]}' is not a valid modifier name ({where})", 400,
                               "invalid_modifier", where)
        if route not in self.modifier_names:
            known = ", ".join(["auto", "base", *self.modifier_names])
            raise RequestError(f"no modifier '{route}' is deployed ({where}); choose one of {known}", 404,
                               "model_not_found", where)
        return Target("modifier", route)

    # ------------------------------------------------------------------ answering

    async def answer(self, kind: str, messages: list[dict[str, str]], params: SamplingParams,
                     target: Target, prompt: str | None = None) -> Outcome:
        """Route and answer in full."""
        t0 = time.perf_counter()
        out, base_answer = await self._decide(kind, messages, params, target, prompt)
        if base_answer is not None and out.decision.modifier is None:
            out.answer = base_answer
        else:
            t1 = time.perf_counter()
            out.answer = await self._client(out.decision).generate(self._req(kind, messages, prompt, params,
                                                                             out.decision.modifier))
            out.timings[self._stage(out.decision)] = (time.perf_counter() - t1) * 1000
            if out.decision.modifier:
                out.timings["adapter_switch"] = float(out.answer.get("switch_ms") or 0.0)
        if base_answer is not None and out.decision.modifier is not None:
            out.answer["base_usage"] = base_answer["usage"]
        out.timings["total"] = (time.perf_counter() - t0) * 1000
        return out

    async def stream(self, kind: str, messages: list[dict[str, str]], params: SamplingParams,
                     target: Target, prompt: str | None = None) -> Outcome:
        """Route, then return an :class:`Outcome` whose ``events`` stream the answer.

        A cascade has to finish the base answer before deciding; when the base is kept
        its text is streamed from memory, otherwise the modifier streams live.
        """
        t0 = time.perf_counter()
        out, base_answer = await self._decide(kind, messages, params, target, prompt)
        if base_answer is not None and out.decision.modifier is None:
            out.events = _replay(base_answer, out.timings, t0)
        else:
            req = self._req(kind, messages, prompt, params, out.decision.modifier)
            out.events = _timed(self._client(out.decision).stream(req), out.timings, self._stage(out.decision), t0)
        return out

    async def _decide(self, kind: str, messages: list[dict[str, str]], params: SamplingParams, target: Target,
                      prompt: str | None) -> tuple[Outcome, dict[str, Any] | None]:
        name = getattr(self.router, "name", type(self.router).__name__)
        if target.kind == "base":
            return Outcome(RouteDecision(None, None, "override"), router=name), None
        if target.kind == "modifier":
            return Outcome(RouteDecision(target.modifier, None, "override", target.modifier), router=name), None
        timings: dict[str, float] = {}
        t = time.perf_counter()
        esc = self.router.escalation(messages) if self.routing.escalation else 0.0
        if esc >= 0.5:
            pre = self.router.route(messages, None, self.modifier_names)
            reason = "escalation" if pre.modifier else ("escalation, no modifiers" if not self.modifier_names
                                                        else "escalation, no matching domain")
            decision = RouteDecision(pre.modifier, None, reason, pre.domain, esc, pre.scores)
            timings["route"] = (time.perf_counter() - t) * 1000
            return Outcome(decision, timings, router=name), None
        if not self.router.needs_base_answer:
            decision = self.router.route(messages, None, self.modifier_names)
            timings["route"] = (time.perf_counter() - t) * 1000
            return Outcome(decision, timings, router=name), None
        # top_logprobs >= 1: llama-cpp-python returns no logprobs at all for top_logprobs=None;
        # a router artifact may ask for more alternatives per token (its features use them)
        top = max(1, params.top_logprobs, int(getattr(self.router, "top_logprobs", 1) or 1))
        base_params = SamplingParams(**{**vars(params), "logprobs": True, "top_logprobs": top})
        t = time.perf_counter()
        req = self._req(kind, messages, prompt, base_params, None)
        req["chosen_logprobs"] = not params.logprobs  # the client did not ask for alternatives
        base_answer = await self.base.generate(req)
        timings["base"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        decision = self.router.route(messages, _generation(base_answer), self.modifier_names)
        timings["route"] = (time.perf_counter() - t) * 1000
        if decision.modifier is not None and decision.modifier not in self.modifier_names:
            decision = RouteDecision(None, decision.confidence, f"router chose unknown '{decision.modifier}'",
                                     decision.domain, scores=decision.scores)
        if not params.logprobs:
            base_answer["logprobs"] = None
        return Outcome(decision, timings, router=name), base_answer

    def _client(self, decision: RouteDecision) -> ModelClient:
        if decision.modifier is None:
            return self.base
        if self.modifiers is None:  # guarded by resolve(); kept for routers that misbehave
            raise RequestError("no modifier deployment is running", 404, "model_not_found", "model")
        return self.modifiers

    @staticmethod
    def _stage(decision: RouteDecision) -> str:
        return "modifier" if decision.modifier else "base"

    @staticmethod
    def _req(kind: str, messages: list[dict[str, str]], prompt: str | None, params: SamplingParams,
             adapter: str | None) -> dict[str, Any]:
        return gen_request(kind, params, messages if kind == "chat" else None, prompt, adapter)


def _generation(answer: dict[str, Any]) -> Generation:
    lps = answer.get("logprobs")
    u = answer.get("usage") or {}
    return Generation(answer["text"], answer["finish_reason"],
                      Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0)), answer.get("model", ""),
                      answer.get("backend", ""), answer.get("latency_s", 0.0),
                      [TokenLogprob(t["token"], t["logprob"], t.get("top") or {}) for t in lps] if lps else None)


async def _replay(answer: dict[str, Any], timings: dict[str, float], t0: float) -> AsyncIterator[dict[str, Any]]:
    """Stream an already finished answer word by word, then its final event."""
    for piece in re.findall(r"\s*\S+|\s+$", answer["text"]):
        yield {"text": piece}
    timings["total"] = (time.perf_counter() - t0) * 1000
    yield {"done": True, **answer}


async def _timed(events: AsyncIterator[dict[str, Any]], timings: dict[str, float], stage: str,
                 t0: float) -> AsyncIterator[dict[str, Any]]:
    t = time.perf_counter()
    try:
        async for ev in events:
            if ev.get("done"):
                timings[stage] = (time.perf_counter() - t) * 1000
                timings["total"] = (time.perf_counter() - t0) * 1000
                if ev.get("adapter"):
                    timings["adapter_switch"] = float(ev.get("switch_ms") or 0.0)
            yield ev
    finally:  # the client went away: stop the model's generation too
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
