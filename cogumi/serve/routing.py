"""Routing: which model answers a request — the base alone, or the base with a domain modifier.

The serving layer talks to routers through :class:`Router`, a small protocol that
the Phase 4 router artifact implements (see :func:`load_router`):

- ``route(messages, base)`` -> :class:`RouteDecision`. ``base`` is the base model's
  answer (a :class:`~cogumi.models.inference.Generation` with token logprobs) in
  the spec's post-generation cascade, or ``None`` when routing from the
  conversation alone (``needs_base_answer`` False, or a pre-route).
- ``escalation(messages)`` -> probability that the latest user turn says the
  previous answer failed ("that's wrong", "try again", ...).

:class:`CascadeRouter` is the built-in default: confidence is the geometric-mean
token probability of the base answer, the domain comes from keywords, and
escalation from phrase patterns. Manual overrides (model ``cogumi/<domain>`` or the
``X-Cogumi-Route`` header) are resolved before any router runs.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cogumi.errors import CogumiError
from cogumi.models.inference import Generation, Message

# Domain hints for the built-in classifier; a domain not listed is matched by its own name.
DOMAIN_KEYWORDS: dict[str, tuple[str, ...]] = {
    "code": ("code", "python", "function", "def ", "class ", "bug", "compile", "javascript", "sql", "regex",
             "algorithm", "```", "program", "script", "error:", "traceback", "implement", "refactor"),
    "reasoning": ("why", "prove", "logic", "reason", "puzzle", "deduce", "if all", "therefore", "riddle",
                  "explain step", "step by step", "how many"),
    "math": ("calculate", "equation", "solve", "sum of", "integral", "derivative", "percent", "+", "*", "="),
    "automation": ("automate", "workflow", "schedule", "cron", "pipeline", "api", "json", "yaml", "webhook",
                   "tool", "bash", "shell", "deploy", "ci/cd", "task"),
}

ESCALATION_PATTERNS = (
    r"\bthat'?s (wrong|not right|incorrect|not what i (asked|wanted|meant))\b",
    r"\b(wrong|incorrect) (answer|again)\b", r"\btry again\b", r"\bnever ?mind\b", r"\bdoes(n'?t| not) work\b",
    r"\bnot (helpful|working|correct)\b", r"\byou('re| are) (wrong|not listening)\b", r"\bstill (wrong|broken)\b",
    r"\bthis is (useless|wrong|terrible)\b", r"\bwhat\?{2,}", r"!{3,}", r"\bugh+\b", r"\bseriously\?",
)
_ESCALATION_RE = re.compile("|".join(ESCALATION_PATTERNS), re.IGNORECASE)


@dataclass
class RouteDecision:
    """Where a request goes, and why (returned to the client for transparency).

    Attributes:
        modifier: the domain adapter to use, or None for the base model alone.
        confidence: the router's confidence that the base answer is good enough (0-1;
            None when no base answer was scored, e.g. a manual override).
        reason: one of ``confident``, ``low-confidence``, ``override``, ``escalation``,
            ``pre-route``, ``no-modifiers``, ``no-domain``.
        domain: the domain the classifier saw (even when the base was kept).
        scores: extra numbers the router wants to show (e.g. per-domain scores).
    """

    modifier: str | None
    confidence: float | None
    reason: str
    domain: str | None = None
    escalation: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def route(self) -> str:
        """``base`` or the modifier's name."""
        return self.modifier or "base"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (route included)."""
        return {"route": self.route, **asdict(self)}


@runtime_checkable
class Router(Protocol):
    """What the serving layer needs from a router (the Phase 4 artifact implements it)."""

    name: str
    needs_base_answer: bool

    def route(self, messages: list[Message], base: Generation | None, modifiers: list[str]) -> RouteDecision:
        """Decide base vs modifier.

        Args:
            messages: the conversation (the last message is the user's new turn).
            base: the base model's answer with token logprobs (cascade), or None (pre-route).
            modifiers: the modifier names deployed right now; never pick another.

        Returns:
            The decision; ``modifier`` is None or one of ``modifiers``.
        """
        ...

    def escalation(self, messages: list[Message]) -> float:
        """Probability (0-1) that the latest user turn is dissatisfied with the previous answer."""
        ...


def answer_confidence(gen: Generation) -> float | None:
    """Geometric-mean probability of the generated tokens (``exp(mean logprob)``); None without logprobs."""
    lps = [t.logprob for t in gen.logprobs or [] if t.logprob is not None and math.isfinite(t.logprob)]
    if not lps:
        return None
    return float(math.exp(sum(lps) / len(lps)))


def classify_domain(messages: list[Message], domains: list[str]) -> tuple[str | None, dict[str, float]]:
    """Keyword scores of ``domains`` over the user turns (the latest counts double).

    Returns:
        (best domain or None when nothing matched, per-domain scores).
    """
    users = [m["content"].lower() for m in messages if m.get("role") == "user"]
    scores: dict[str, float] = {}
    for d in domains:
        words = DOMAIN_KEYWORDS.get(d, (d,))
        scores[d] = sum((2.0 if i == len(users) - 1 else 1.0) * sum(text.count(w) for w in words)
                        for i, text in enumerate(users))
    best = max(scores, key=lambda d: scores[d], default=None)
    return (best if best is not None and scores[best] > 0 else None), scores


def detect_escalation(messages: list[Message]) -> float:
    """1.0 when the latest user turn follows an assistant answer and reads as dissatisfied, else 0.0."""
    if len(messages) < 3 or messages[-1].get("role") != "user":
        return 0.0
    if not any(m.get("role") == "assistant" for m in messages[:-1]):
        return 0.0
    return 1.0 if _ESCALATION_RE.search(messages[-1]["content"]) else 0.0


class CascadeRouter:
    """The built-in router: the spec's confidence cascade with keyword domains.

    Args:
        threshold: keep the base answer when its confidence is at least this.
        needs_base_answer: True for the cascade, False to route from the conversation
            alone (then a matching domain always gets its modifier).
    """

    name = "cascade-default"

    def __init__(self, threshold: float = 0.8, needs_base_answer: bool = True):
        self.threshold, self.needs_base_answer = threshold, needs_base_answer

    def route(self, messages: list[Message], base: Generation | None, modifiers: list[str]) -> RouteDecision:
        domain, scores = classify_domain(messages, modifiers)
        if base is None:
            return RouteDecision(domain, None, "pre-route" if domain else "no-domain", domain, scores=scores)
        conf = answer_confidence(base)
        if conf is not None and conf >= self.threshold:
            return RouteDecision(None, conf, "confident", domain, scores=scores)
        if not modifiers:
            return RouteDecision(None, conf, "no-modifiers", domain, scores=scores)
        if domain is None:
            return RouteDecision(None, conf, "no-domain", None, scores=scores)
        return RouteDecision(domain, conf, "low-confidence", domain, scores=scores)

    def escalation(self, messages: list[Message]) -> float:
        return detect_escalation(messages)


def load_router(artifact: str | None, threshold: float, mode: str) -> Router:
    """The router the serving layer uses.

    Without ``artifact`` it is :class:`CascadeRouter`. With one, the folder is handed to
    ``cogumi.route.load_router(path, threshold=..., mode=...)``, the Phase 4 loader,
    which must return an object satisfying :class:`Router`.

    Args:
        artifact: a ``router/`` folder written by ``cogumi router``, or None.
        threshold: the configured confidence threshold (the artifact may carry its own).
        mode: ``cascade`` or ``pre``.

    Raises:
        CogumiError: the folder is missing, the loader is missing, or it returned something else.
    """
    if not artifact:
        return CascadeRouter(threshold, needs_base_answer=(mode == "cascade"))
    path = Path(artifact)
    if not path.is_dir():
        raise CogumiError(f"router artifact folder {path} does not exist", "serve.routing.artifact",
                          "run `cogumi router` first, or leave serve.routing.artifact empty for the built-in router")
    try:
        loader = importlib.import_module("cogumi.route").load_router
    except (ImportError, AttributeError):
        raise CogumiError("this install has no Phase 4 router loader (cogumi.route.load_router)",
                          "serve.routing.artifact", "leave serve.routing.artifact empty to use the built-in router") from None
    router = loader(path, threshold=threshold, mode=mode)
    if not isinstance(router, Router):
        raise CogumiError(f"cogumi.route.load_router returned {type(router).__name__}, not a Router",
                          str(path), "the loader must return an object with route() and escalation()")
    return router
