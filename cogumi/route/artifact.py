"""The router artifact as the serving layer uses it.

:meth:`RouterArtifact.load` reads a ``router/`` folder; the object satisfies
:class:`cogumi.route.contract.Router` (``name``, ``needs_base_answer``,
``route(messages, base, modifiers)``, ``escalation(messages)``) and also offers a
plain API: ``route_query(messages)``, ``route_after_generation(messages, generation)``
and ``is_escalation(messages)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cogumi.errors import ArtifactError
from cogumi.models.inference import Generation, Message
from cogumi.route.config import EmbeddingSettings
from cogumi.route.contract import RouteDecision
from cogumi.route.escalation import follow_up
from cogumi.route.features import confidence_matrix, generation_features
from cogumi.route.model import ROUTER_JSON, WEIGHTS, RouterModel


def query_text(messages: list[Message], escalated: bool = False) -> str:
    """The text routed on: the latest user turn (with the one before it when the latest complains)."""
    users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    if not users:
        return ""
    return "\n".join(users[-2:]) if escalated and len(users) > 1 else users[-1]


class RouterArtifact:
    """A loaded ``router/`` folder: embedder + fitted router.

    Args:
        model: the fitted arrays.
        embedder: an object with ``encode(list[str]) -> (n, E)`` (the artifact's embedding model).
        mode: ``cascade`` (score the base answer) or ``pre`` (route from the conversation alone).
        threshold: keep the base when confidence >= this; None uses the artifact's operating threshold.
    """

    def __init__(self, model: RouterModel, embedder, mode: str = "cascade", threshold: float | None = None):
        if mode not in ("cascade", "pre"):
            raise ValueError(f"mode must be 'cascade' or 'pre', not {mode!r}")
        self.model, self.embedder, self.mode = model, embedder, mode
        self.threshold = float(model.threshold if threshold is None else threshold)
        self.needs_base_answer = mode == "cascade"
        self.name = f"router-artifact/{mode}"
        self.domains = list(model.domains.classes)
        self.top_logprobs = int(model.info.get("top_logprobs", 1))

    @classmethod
    def load(cls, path: str | Path, mode: str = "cascade", threshold: float | None = None,
             embedder=None) -> RouterArtifact:
        """Load a ``router/`` folder written by ``cogumi router``.

        Args:
            path: the folder (``<run>/router``).
            mode: ``cascade`` or ``pre``.
            threshold: override of the operating threshold.
            embedder: reuse an already loaded embedder (else the artifact's model is loaded offline).

        Raises:
            ArtifactError: missing/corrupt files; EmbeddingModelError: the embedding model is missing.
        """
        folder = Path(path)
        cfg_file, weights_file = folder / ROUTER_JSON, folder / WEIGHTS
        if not cfg_file.is_file() or not weights_file.is_file():
            raise ArtifactError(f"{folder} is not a router artifact (no {ROUTER_JSON} / {WEIGHTS})", str(folder),
                                "run `cogumi router` and point at its <run>/router folder")
        model = RouterModel.from_files(cfg_file.read_text(), weights_file.read_bytes(), str(folder))
        if embedder is None:
            from cogumi.route.embedding import Embedder

            emb_info = model.info.get("embedding", {})
            embedder = Embedder(EmbeddingSettings(model=emb_info.get("model", EmbeddingSettings().model)))
        dim = getattr(embedder, "dim", None)
        if dim is not None and dim != model.projection.mean.shape[0]:
            raise ArtifactError(f"the embedding model gives {dim} dimensions, the router was fitted on "
                                f"{model.projection.mean.shape[0]}", str(folder),
                                "load it with the embedding model it was built with, or rebuild the router")
        return cls(model, embedder, mode, threshold)

    # ------------------------------------------------------------------ the serving protocol

    def route(self, messages: list[Message], base: Generation | None, modifiers: list[str]) -> RouteDecision:
        """Decide base vs modifier (:class:`cogumi.route.contract.Router`).

        A dissatisfied follow-up goes to the domain's modifier whatever the confidence; without a
        base answer (or without its logprobs) the pre-route network decides from the query alone.

        Returns:
            :class:`~cogumi.route.contract.RouteDecision`; ``modifier`` is None or one of ``modifiers``.
        """
        d = self.decide(messages, base, modifiers)
        return RouteDecision(d["modifier"], d["confidence"], d["reason"], d["domain"], d["escalation"], d["scores"])

    def escalation(self, messages: list[Message]) -> float:
        """Probability that the latest user turn is dissatisfied with the previous answer (0.0 if no follow-up)."""
        text = follow_up(messages)
        if text is None:
            return 0.0
        return float(self.model.escalation.proba(self.embedder.encode([text]))[0])

    # ------------------------------------------------------------------ plain API

    def route_query(self, messages: list[Message]) -> tuple[str | None, float]:
        """Pre-generation route over every known domain: (modifier or None, confidence in the base)."""
        d = self.decide(messages, None, self.domains)
        return d["modifier"], d["confidence"]

    def route_after_generation(self, messages: list[Message], generation: Generation) -> tuple[str | None, float]:
        """The spec's cascade: score the base ``generation``; (modifier or None, calibrated confidence)."""
        d = self.decide(messages, generation, self.domains)
        return d["modifier"], d["confidence"]

    def is_escalation(self, messages: list[Message]) -> tuple[bool, float]:
        """(flagged, probability) for the latest user turn."""
        p = self.escalation(messages)
        return p >= self.model.escalation.threshold, p

    def decide(self, messages: list[Message], base: Generation | None, modifiers: list[str]) -> dict[str, Any]:
        """The decision as a dict (``modifier, confidence, reason, domain, escalation, scores``)."""
        fu = follow_up(messages)
        texts = [query_text(messages)] + ([fu] if fu is not None else [])
        emb = self.embedder.encode(texts)
        esc = float(self.model.escalation.proba(emb[1:2])[0]) if fu is not None else 0.0
        escalated = esc >= self.model.escalation.threshold
        q = self.embedder.encode([query_text(messages, True)]) if escalated else emb[:1]
        probs = self.model.domains.proba(q)[0]
        domain = self.domains[int(np.argmax(probs))] if self.domains else None
        scores = {f"domain:{d}": round(float(p), 4) for d, p in zip(self.domains, probs)}
        use_base = self.needs_base_answer and base is not None and bool(base.logprobs)
        conf_rows = confidence_matrix([generation_features(base)]) if use_base and base is not None else None
        p_mod = float(self.model.modifier_probability(q, conf_rows)[0])
        confidence = 1.0 - p_mod
        scores["p_modifier"] = round(p_mod, 4)
        scores["router_input"] = 1.0 if use_base else 0.0  # 1: cascade net on the base answer, 0: query only
        if escalated:
            reason = "escalation"
        elif confidence >= self.threshold:
            return self._out(None, confidence, "confident", domain, esc, scores)
        else:
            reason = "low-confidence" if use_base else "pre-route"
        if not modifiers:
            return self._out(None, confidence, "no-modifiers" if not escalated else "escalation, no modifiers",
                             domain, esc, scores)
        if domain not in modifiers:
            return self._out(None, confidence, "no-domain" if not escalated else "escalation, no matching domain",
                             domain, esc, scores)
        return self._out(domain, confidence, reason, domain, esc, scores)

    @staticmethod
    def _out(modifier, confidence, reason, domain, esc, scores) -> dict[str, Any]:
        return {"modifier": modifier, "confidence": round(float(confidence), 4), "reason": reason,
                "domain": domain, "escalation": round(esc, 4), "scores": scores}
