"""The three-tier teacher cascade: cheapest tier first, a prompt moves up only on a failed check.

Each tier is a :class:`~cogumi.endpoints.metered.MeteredEndpoint` (cache, rate limit, retries,
cost). A tier whose calls fail after all retries is marked *down*: it is skipped for the
rest of the run and the degradation is recorded. When every tier's answer fails
verification, the last answering tier's answer is kept flagged ``verified=False`` (or the
prompt is dropped, ``accept_unverified_last=False``).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from collections.abc import Callable

from cogumi.endpoints.metered import MeteredEndpoint
from cogumi.endpoints.retry import RetriesExhausted
from cogumi.models.inference import SamplingParams
from cogumi.modifiers.verify import Verdict

log = logging.getLogger(__name__)


@dataclass
class TierStats:
    """What one tier did."""

    name: str
    calls: int = 0
    answered: int = 0
    accepted: int = 0
    failed_checks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    down: str | None = None


@dataclass
class Tier:
    """One cascade tier: its endpoint and answer cap."""

    endpoint: MeteredEndpoint
    max_tokens: int
    stats: TierStats = field(init=False)

    def __post_init__(self) -> None:
        self.stats = TierStats(self.endpoint.name)


class Cascade:
    """Answer prompts with the cheapest tier whose answer passes ``check``.

    Args:
        tiers: cheapest first.
        check: ``(task, answer) -> Verdict``.
        accept_unverified_last: keep the last answer when every tier failed the check.
        concurrency: prompts in flight.
    """

    def __init__(self, tiers: list[Tier], check: Callable[[dict[str, Any], str], Verdict],
                 accept_unverified_last: bool = True, concurrency: int = 1):
        self.tiers, self.check = tiers, check
        self.accept_unverified_last, self.concurrency = accept_unverified_last, concurrency
        self.check_cost = 0.0
        self._lock = threading.Lock()

    def one(self, task: dict[str, Any]) -> dict[str, Any]:
        """Run one task up the tiers.

        Returns:
            ``{id, domain, prompt, response, tier, verified, attempts, check}``; ``response`` is None
            when no tier answered (all down) or every answer failed and unverified answers are refused.
        """
        messages = [{"role": "user", "content": task["prompt"]}]
        last: tuple[str, str, Verdict] | None = None
        tried: list[str] = []
        for tier in self.tiers:
            st = tier.stats
            if st.down:
                continue
            tried.append(st.name)
            try:
                with self._lock:
                    st.calls += 1
                res = tier.endpoint.chat(messages, SamplingParams(max_tokens=tier.max_tokens, temperature=0.0))
            except RetriesExhausted as exc:
                self._mark_down(st, str(exc))
                continue
            gen = res.generation
            verdict = self.check(task, gen.text)
            with self._lock:
                st.answered += 1
                st.prompt_tokens += gen.usage.prompt_tokens
                st.completion_tokens += gen.usage.completion_tokens
                st.cost_usd += res.cost_usd
                self.check_cost += verdict.cost_usd
                if verdict.passed:
                    st.accepted += 1
                else:
                    st.failed_checks += 1
            if verdict.passed:
                return _row(task, gen.text, st.name, True, tried, verdict)
            last = (gen.text, st.name, verdict)
        if last is not None and self.accept_unverified_last:
            return _row(task, last[0], last[1], False, tried, last[2])
        return _row(task, None, None, False, tried, last[2] if last else None)

    def run(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Answer every task (threaded by ``concurrency``), in input order."""
        if self.concurrency <= 1 or len(tasks) <= 1:
            return [self.one(t) for t in tasks]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self.one, tasks))

    def _mark_down(self, st: TierStats, why: str) -> None:
        with self._lock:
            if not st.down:
                st.down = why[:300]
                log.warning("cascade: tier %s is down (%s); prompts move to the next tier", st.name, st.down)

    def report(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-tier share of the kept answers, cost, and the tiers that went down."""
        kept = [r for r in rows if r["response"] is not None]
        tiers = []
        for t in self.tiers:
            share = sum(r["tier"] == t.stats.name for r in kept) / len(kept) if kept else 0.0
            tiers.append({**asdict(t.stats), "share": round(share, 4), "cost_usd": round(t.stats.cost_usd, 6)})
        return {"prompts": len(rows), "kept": len(kept), "verified": sum(r["verified"] for r in kept),
                "unverified_kept": sum(not r["verified"] for r in kept), "dropped": len(rows) - len(kept),
                "tiers": tiers, "teacher_cost_usd": round(sum(t.stats.cost_usd for t in self.tiers), 6),
                "check_cost_usd": round(self.check_cost, 6),
                "down": {t.stats.name: t.stats.down for t in self.tiers if t.stats.down}}


def _row(task: dict[str, Any], response: str | None, tier: str | None, verified: bool, tried: list[str],
         verdict: Verdict | None) -> dict[str, Any]:
    return {"id": task["id"], "domain": task["domain"], "prompt": task["prompt"], "response": response,
            "tier": tier, "verified": verified, "attempts": len(tried), "tiers_tried": ",".join(tried),
            "check": verdict.detail if verdict else "no tier answered"}
