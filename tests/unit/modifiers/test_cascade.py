"""The teacher cascade against the real local OpenAI-compatible server (tiers = endpoints on it)."""

from __future__ import annotations

from cogumi.config_base import ModelConfig
from cogumi.endpoints.metered import MeteredEndpoint
from cogumi.endpoints.config import RetryConfig
from cogumi.endpoints.limiter import LocalLimiter
from cogumi.modifiers.cascade import Cascade, Tier
from cogumi.modifiers.verify import Verdict, verify

RETRY = RetryConfig(max_attempts=2, base_s=0.05, max_s=0.1)
TASK = {"id": "m1", "domain": "reasoning", "prompt": "Say hi.", "answer": "4"}


def _tier(name: str, url: str, max_tokens: int, price_out: float = 0.0) -> Tier:
    lim = LocalLimiter()
    lim.configure(name, 600, 1_000_000)
    model = ModelConfig(backend="openai", model="local-teacher", base_url=url, timeout_s=30)
    return Tier(MeteredEndpoint(name, model, 0.0, price_out, RETRY, lim, None), max_tokens)


def _tiers(server, dead_first: bool = False) -> list[Tier]:
    first = "http://127.0.0.1:9/v1" if dead_first else server.base_url
    return [_tier("t1", first, 3, 1.0), _tier("t2", server.base_url, 4, 10.0), _tier("t3", server.base_url, 5, 100.0)]


def _passes_on(calls: set[int]):
    """A check that passes on the n-th answer it sees (counting from 1)."""
    seen = []

    def check(task, answer):
        seen.append(answer)
        return Verdict(len(seen) in calls, 1.0 if len(seen) in calls else 0.0, f"call {len(seen)}")

    return check


def _sent_max_tokens(server) -> list[int]:
    return [r.get("max_tokens") or r.get("max_completion_tokens") for r in server.requests]


def test_prompt_stops_at_the_first_tier_that_passes(fresh_openai_server):
    c = Cascade(_tiers(fresh_openai_server), _passes_on({1}))
    row = c.one(TASK)
    assert row["tier"] == "t1" and row["verified"] and row["attempts"] == 1
    assert _sent_max_tokens(fresh_openai_server) == [3]


def test_prompt_moves_up_only_when_the_lower_answer_fails(fresh_openai_server):
    c = Cascade(_tiers(fresh_openai_server), _passes_on({2}))
    row = c.one(TASK)
    assert row["tier"] == "t2" and row["verified"] and row["tiers_tried"] == "t1,t2"
    assert _sent_max_tokens(fresh_openai_server) == [3, 4]
    rep = c.report([row])
    shares = {t["name"]: t["share"] for t in rep["tiers"]}
    assert shares == {"t1": 0.0, "t2": 1.0, "t3": 0.0}
    t1, t2 = rep["tiers"][0], rep["tiers"][1]
    assert t1["failed_checks"] == 1 and t2["accepted"] == 1
    assert t2["cost_usd"] > 0 and rep["teacher_cost_usd"] >= t1["cost_usd"] + t2["cost_usd"] - 1e-9


def test_all_tiers_fail_keeps_the_last_answer_flagged_or_drops_it(fresh_openai_server):
    row = Cascade(_tiers(fresh_openai_server), _passes_on(set())).one(TASK)
    assert row["tier"] == "t3" and not row["verified"] and row["response"] is not None
    row = Cascade(_tiers(fresh_openai_server), _passes_on(set()), accept_unverified_last=False).one(TASK)
    assert row["response"] is None and row["tier"] is None


def test_a_tier_that_is_down_is_skipped_and_recorded(fresh_openai_server):
    c = Cascade(_tiers(fresh_openai_server, dead_first=True), _passes_on({1, 2}))
    rows = c.run([TASK, {**TASK, "id": "m2"}])
    assert [r["tier"] for r in rows] == ["t2", "t2"]
    rep = c.report(rows)
    assert set(rep["down"]) == {"t1"} and "connection" in rep["down"]["t1"]
    assert rep["tiers"][0]["calls"] == 1  # marked down after the first prompt, never called again


def test_server_errors_exhaust_retries_and_escalate(fresh_openai_server):
    fresh_openai_server.faults.extend(["500", "500"])  # t1's two attempts
    c = Cascade(_tiers(fresh_openai_server), _passes_on({1}))
    row = c.one(TASK)
    assert row["tier"] == "t2"
    assert "t1" in c.report([row])["down"]


def test_real_math_verification_drives_escalation(fresh_openai_server):
    task = {**TASK, "answer": "987654321"}  # a 3-5 token answer from the tiny model cannot contain it
    c = Cascade(_tiers(fresh_openai_server), lambda t, a: verify("math", t, a))
    row = c.one(task)
    assert row["tiers_tried"] == "t1,t2,t3" and not row["verified"]
    assert c.report([row])["unverified_kept"] == 1
