"""The routing contract between the router (Phase 4) and the serving layer.

- ``Router.route(messages, base, modifiers)`` -> :class:`RouteDecision`. ``base`` is the
  base model's answer (a :class:`~cogumi.models.inference.Generation` with token
  logprobs) in the spec's post-generation cascade, or ``None`` when routing from the
  conversation alone (``needs_base_answer`` False, or a pre-route).
- ``Router.escalation(messages)`` -> probability that the latest user turn says the
  previous answer failed ("that's wrong", "try again", ...).

Implemented by :class:`cogumi.route.builtin.CascadeRouter` (the built-in default) and
:class:`cogumi.route.artifact.RouterArtifact` (the trained router);
:func:`cogumi.route.loader.load_router` picks one. Manual overrides (model
``cogumi/<domain>`` or the ``X-Cogumi-Route`` header) are resolved by the serving layer
before any router runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from cogumi.models.inference import Generation, Message


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
