"""Teacher generation: route each prompt to a teacher, generate with its category's settings.

Routing is deterministic (a hash of the row id, weighted by ``share`` among the
teachers that take the row's domain and difficulty), so a rerun sends every
prompt to the same teacher and hits the response cache.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cogumi.endpoints.metered import MeteredEndpoint
from cogumi.curate.config import CurateConfig, TeacherConfig
from cogumi.endpoints.retry import RetriesExhausted
from cogumi.curate.rows import ERROR, is_ok, mark
from cogumi.models.inference import SamplingParams


def takes(teacher: TeacherConfig, domain: str | None, difficulty: str | None) -> bool:
    """Whether ``teacher`` is configured for this domain and difficulty."""
    return ((not teacher.domains or domain in teacher.domains)
            and (not teacher.difficulties or difficulty in teacher.difficulties))


def assign_teacher(row_id: str, domain: str | None, difficulty: str | None,
                   teachers: list[TeacherConfig]) -> TeacherConfig | None:
    """The teacher of one row: stable weighted choice among eligible teachers (None = nobody takes it)."""
    eligible = [t for t in teachers if takes(t, domain, difficulty)]
    if not eligible:
        return None
    total = sum(t.share for t in eligible)
    digest = hashlib.sha256(str(row_id).encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2 ** 64 * total
    for t in eligible:
        point -= t.share
        if point < 0:
            return t
    return eligible[-1]


def sampling_for(cfg: CurateConfig, domain: str | None, seed: int) -> SamplingParams:
    """Generation settings of a domain (greedy where the category table says so)."""
    cat = cfg.categories.get(domain or "") or cfg.categories.get("conversation")
    max_tokens = cat.max_tokens if cat else 1024
    if cfg.max_new_tokens is not None:
        max_tokens = min(max_tokens, cfg.max_new_tokens)
    temperature = cat.temperature if cat and cat.do_sample else 0.0
    return SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)


class TeacherStep:
    """Generate the responses of a batch of rows (rows not ``ok`` pass through).

    Args:
        cfg: the curate section.
        endpoints: one metered endpoint per teacher name.
        seed: sampling seed (part of the cache key).
    """

    def __init__(self, cfg: CurateConfig, endpoints: dict[str, MeteredEndpoint], seed: int = 0):
        self.cfg, self.endpoints, self.seed = cfg, endpoints, seed
        self.threads = max(t.concurrency for t in cfg.teachers)

    def messages(self, instruction: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.cfg.system_prompt}] if self.cfg.system_prompt else []
        return msgs + [{"role": "user", "content": instruction}]

    def request(self, row: dict[str, Any]) -> tuple[TeacherConfig, list[dict[str, str]], SamplingParams] | None:
        """Who answers an ok row, and with which conversation and settings (None: not ok or nobody takes it)."""
        if not is_ok(row):
            return None
        teacher = assign_teacher(row["id"], row["domain"], row["difficulty"], self.cfg.teachers)
        if teacher is None:
            return None
        return teacher, self.messages(row["instruction"]), sampling_for(self.cfg, row["domain"], self.seed)

    def one(self, row: dict[str, Any]) -> dict[str, Any]:
        """Generate one row's response (or mark it error)."""
        if not is_ok(row):
            return row
        call = self.request(row)
        if call is None:
            return mark(row, ERROR, "teacher", f"no teacher takes domain '{row['domain']}' and difficulty "
                                               f"'{row['difficulty']}' (set teachers[].domains/difficulties)")
        teacher, messages, params = call
        row["teacher"] = teacher.name
        try:
            res = self.endpoints[teacher.name].chat(messages, params)
        except RetriesExhausted as exc:
            row["attempts"] = len(exc.failures)
            if exc.unanswered:  # nothing came back, but timed-out attempts may have been billed
                row.update(unanswered_attempts=exc.unanswered, estimated_usd=exc.estimated_usd,
                           cost_usd=exc.estimated_usd, cached=False)
            return mark(row, ERROR, "teacher", f"teacher '{teacher.name}': {exc}")
        except Exception as exc:  # noqa: BLE001 - a row never takes the batch down
            return mark(row, ERROR, "teacher", f"teacher '{teacher.name}': {exc.__class__.__name__}: {exc}")
        gen = res.generation
        row.update(response=gen.text, finish_reason=gen.finish_reason, prompt_tokens=gen.usage.prompt_tokens,
                   completion_tokens=gen.usage.completion_tokens, cost_usd=res.cost_usd, cached=res.cached,
                   attempts=res.attempts, unanswered_attempts=res.unanswered, estimated_usd=res.estimated_usd,
                   batch_id=res.batch_id)
        return row

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.threads <= 1 or len(rows) <= 1:
            return [self.one(r) for r in rows]
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(self.one, rows))
