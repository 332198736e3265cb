"""Failure mining: the base model answers domain tasks on Ray Data; each answer is verified.

A failure is a failed execution (code), a wrong final number (math) or a judge score
below ``min_judge_score`` (other domains). :class:`MineUDF` is the pure per-batch step;
:func:`mine` wires it into ``map_batches`` (or runs it in-process).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cogumi.config_base import ModelConfig
from cogumi.endpoints.metered import MeteredEndpoint
from cogumi.endpoints.config import RetryConfig
from cogumi.endpoints.limiter import LocalLimiter
from cogumi.models.inference import SamplingParams, make_backend
from cogumi.modifiers.verify import verify
from cogumi.raycluster import connect

log = logging.getLogger(__name__)


def judge_endpoint(model: ModelConfig, retry: RetryConfig | None = None) -> MeteredEndpoint:
    """A metered judge endpoint with a process-local rate limiter and no cache."""
    limiter = LocalLimiter()
    limiter.configure("judge", 600, 1_000_000)
    return MeteredEndpoint("judge", model, 0.0, 0.0, retry or RetryConfig(max_attempts=3, base_s=0.5), limiter, None)


class MineUDF:
    """Answer tasks with a model and verify each answer (one instance per Ray actor).

    Args:
        model: the answering model (base, or base + adapter for validation).
        judge: judge model for ``judge``-verified domains (None when no domain needs it).
        kinds: domain -> verification kind.
        max_tokens: answer length.
        min_score: judge pass mark.
        timeout_s: code sandbox limit.
    """

    def __init__(self, model: ModelConfig, judge: ModelConfig | None, kinds: Mapping[str, str], max_tokens: int,
                 min_score: float, timeout_s: float = 10.0):
        self.backend = make_backend(model)
        self.judge = judge_endpoint(judge) if judge is not None else None
        self.kinds, self.max_tokens, self.min_score, self.timeout_s = kinds, max_tokens, min_score, timeout_s

    def one(self, task: dict[str, Any]) -> dict[str, Any]:
        """Answer and verify one task; adds ``response``, ``passed``, ``score``, ``detail``."""
        gen = self.backend.chat([{"role": "user", "content": task["prompt"]}],
                                SamplingParams(max_tokens=self.max_tokens, temperature=0.0, seed=0))
        v = verify(self.kinds[task["domain"]], task, gen.text, self.judge, self.min_score, self.timeout_s)
        return {**task, "response": gen.text, "passed": bool(v.passed),
                "score": float(v.score) if v.score is not None else None, "detail": v.detail}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = _rows(batch)
        out = [self.one(r) for r in rows]
        return {k: [r.get(k) for r in out] for k in out[0]} if out else batch


def _rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(batch)
    n = len(batch[keys[0]]) if keys else 0
    return [{k: _plain(batch[k][i]) for k in keys} for i in range(n)]


def _plain(v: Any) -> Any:
    return v.tolist() if hasattr(v, "tolist") else v


def mine(tasks: list[dict[str, Any]], model: ModelConfig, judge: ModelConfig | None, kinds: Mapping[str, str],
         max_tokens: int, min_score: float, *, use_ray: bool = True, batch_size: int = 8, num_cpus: float = 1.0,
         workers: int = 1, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Answer and verify every task (Ray Data ``map_batches`` with an actor, or in-process).

    Args:
        tasks: task rows (id, domain, prompt, tests/answer).
        model: the answering model.
        judge: judge model (needed when any kind is ``judge``).
        kinds: domain -> ``code`` / ``math`` / ``judge``.
        max_tokens, min_score, timeout_s: see :class:`MineUDF`.
        use_ray, batch_size, num_cpus, workers: where and how it runs (``workers`` actors).

    Returns:
        The tasks with ``response``, ``passed``, ``score`` and ``detail``, in input order.
    """
    if not tasks:
        return []
    rows = [{"id": str(t["id"]), "domain": t["domain"], "prompt": t["prompt"], "tests": list(t.get("tests") or []),
             "answer": str(t.get("answer", ""))} for t in tasks]
    args: dict[str, Any] = dict(model=model, judge=judge, kinds=kinds, max_tokens=max_tokens, min_score=min_score,
                                timeout_s=timeout_s)
    if use_ray:
        import ray

        connect()
        ds = ray.data.from_items(rows).map_batches(
            MineUDF, fn_constructor_kwargs=args, batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=num_cpus)
        out = ds.take_all()
    else:
        columns = MineUDF(**args)({k: [r[k] for r in rows] for k in rows[0]})
        out = [{k: columns[k][i] for k in columns} for i in range(len(rows))]
    order = {t["id"]: i for i, t in enumerate(tasks)}
    out = sorted((_normal(r) for r in out), key=lambda r: order[r["id"]])
    log.info("mined %d tasks: %d failures", len(out), sum(not r["passed"] for r in out))
    return out


def _normal(r: dict[str, Any]) -> dict[str, Any]:
    r = {k: _plain(v) for k, v in r.items()}
    r["passed"] = bool(r["passed"])
    return r
