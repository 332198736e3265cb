"""The built-in router: the spec's confidence cascade with keyword domains and phrase-pattern escalation.

Confidence is the geometric-mean token probability of the base answer, the domain
comes from keywords, escalation from phrase patterns. Serving uses it when no trained
router artifact is configured.
"""

from __future__ import annotations

import math
import re

from cogumi.models.inference import Generation, Message
from cogumi.route.contract import RouteDecision

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
