"""The three-tier teacher cascade: cheapest tier first, a prompt moves up only on a failed check.

Each tier is a :class:`~cogumi.endpoints.metered.MeteredEndpoint` (cache, rate limit, retries,
cost). A tier whose calls fail after all retries is marked *down*: it is skipped for the
rest of the run and the degradation is recorded. When every tier's answer fails
verification, the last answering tier's answer is kept flagged ``verified=False`` (or the
prompt is dropped, ``accept_unverified_last=False``). A tier in batch mode gets every prompt
that reaches it in one run of its provider's batch API (:mod:`cogumi.endpoints.batch`).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from collections.abc import Callable

from cogumi.endpoints.batch import BatchRequest, uncached_request
from cogumi.endpoints.metered import BatchBilling, MeteredEndpoint
from cogumi.endpoints.retry import RetriesExhausted
from cogumi.models.inference import Message, SamplingParams
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
    batch_failed: int = 0
    down: str | None = None


@dataclass
class Tier:
    """One cascade tier: its endpoint and answer cap.

    ``prefetch`` (batch mode): called once per cascade run with the requests of every prompt
    that reaches this tier; it runs them through the provider's batch API into the endpoint's
    cache and returns the billing the endpoint then applies to those answers.
    """

    endpoint: MeteredEndpoint
    max_tokens: int
    prefetch: Callable[[list[BatchRequest]], BatchBilling | None] | None = None
    stats: TierStats = field(init=False)

    def __post_init__(self) -> None:
        self.stats = TierStats(self.endpoint.name)

    def request(self, task: dict[str, Any]) -> tuple[list[Message], SamplingParams]:
        """The conversation and settings this tier answers ``task`` with."""
        return [{"role": "user", "content": task["prompt"]}], SamplingParams(max_tokens=self.max_tokens,
                                                                             temperature=0.0)


@dataclass
class _Trail:
    """How far one prompt got: the tiers it tried and the last answer that failed its check."""

    tried: list[str] = field(default_factory=list)
    last: tuple[str, str, Verdict] | None = None


class Cascade:
    """Answer prompts with the cheapest tier whose answer passes ``check``.

    Online tiers are asked prompt by prompt; when a tier is in batch mode (``Tier.prefetch``)
    the run goes tier by tier instead, so that every prompt reaching that tier goes into one
    batch run. Both orders give the same rows: each prompt tries the same tiers in the same order.

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
        trail = _Trail()
        for tier in self.tiers:
            row = self._ask(tier, task, trail)
            if row is not None:
                return row
        return self._unresolved(task, trail)

    def _ask(self, tier: Tier, task: dict[str, Any], trail: _Trail) -> dict[str, Any] | None:
        """Ask one tier: the row when its answer passes, else None (``trail`` updated)."""
        st = tier.stats
        if st.down:
            return None
        trail.tried.append(st.name)
        try:
            with self._lock:
                st.calls += 1
            res = tier.endpoint.chat(*tier.request(task))
        except RetriesExhausted as exc:
            batch = tier.endpoint.batch
            if batch is not None and tier.endpoint.key(*tier.request(task)) in batch.failed:
                with self._lock:  # the batch API refused this one row: the prompt moves up, the tier stays
                    st.batch_failed += 1
                return None
            self._mark_down(st, str(exc))
            return None
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
            return _row(task, gen.text, st.name, True, trail.tried, verdict)
        trail.last = (gen.text, st.name, verdict)
        return None

    def _unresolved(self, task: dict[str, Any], trail: _Trail) -> dict[str, Any]:
        last = trail.last
        if last is not None and self.accept_unverified_last:
            return _row(task, last[0], last[1], False, trail.tried, last[2])
        return _row(task, None, None, False, trail.tried, last[2] if last else None)

    def run(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Answer every task (threaded by ``concurrency``), in input order."""
        if any(t.prefetch is not None for t in self.tiers):
            return self._run_by_tier(tasks)
        if self.concurrency <= 1 or len(tasks) <= 1:
            return [self.one(t) for t in tasks]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self.one, tasks))

    def _run_by_tier(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        trails = [_Trail() for _ in tasks]
        rows: dict[int, dict[str, Any]] = {}
        for tier in self.tiers:
            pending = [i for i in range(len(tasks)) if i not in rows]
            if not pending or tier.stats.down:
                continue
            if tier.prefetch is not None:
                ep = tier.endpoint
                # answers already in the response cache are not asked (or paid) again
                requests = [r for i in pending if (r := uncached_request(ep, *tier.request(tasks[i]))) is not None]
                ep.batch = tier.prefetch(requests)
                log.info("cascade: tier %s: %d of %d prompt(s) through its batch API", ep.name, len(requests),
                         len(pending))

            def ask(i: int, tier: Tier = tier) -> dict[str, Any] | None:
                return self._ask(tier, tasks[i], trails[i])

            with ThreadPoolExecutor(max(1, self.concurrency)) as pool:
                for i, row in zip(pending, pool.map(ask, pending)):
                    if row is not None:
                        rows[i] = row
        return [rows[i] if i in rows else self._unresolved(t, trails[i]) for i, t in enumerate(tasks)]

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
