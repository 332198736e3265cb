"""Cascade tiers in batch mode, against the real local batch server (HTTP, ``openai`` client).

The server answers with canned text of ``1 + max_tokens`` words ("Qn: w1 w2 ..."), so a check
that wants ``need`` words tells which tier's answer passes: tier t1 (2 tokens) gives 3 words,
t2 (5 tokens) gives 6.
"""

from __future__ import annotations

import pytest

from cogumi.config import load_config
from cogumi.endpoints.batch import BatchLedger
from cogumi.errors import CogumiError
from cogumi.modifiers.stage import build_cascade
from cogumi.modifiers.verify import Verdict
from tests.support.batch_server import LocalBatchServer
from tests.support.canned_backend import CannedBackend

PRICE_OUT = 100.0  # USD per million output tokens, online; batch bills half


@pytest.fixture(scope="module")
def server():
    s = LocalBatchServer(CannedBackend(), delay_s=0.05).start()
    yield s
    s.stop()


@pytest.fixture
def fresh(server):
    server.batch_faults.clear()
    server.submissions.clear()
    server.batch_paid.clear()
    server.requests.clear()
    return server


def _cfg(url: str, t1_mode: str = "batch"):
    tier = "{{name: {n}, model: {{backend: openai, base_url: '{u}', model: local-teacher}}, max_tokens: {m}, " \
           "price_out_per_mtok: {p}, mode: {mode}, batch: {{poll_s: 0.05}}}}"
    tiers = "[" + tier.format(n="t1", u=url, m=2, p=PRICE_OUT, mode=t1_mode) + ", " + \
        tier.format(n="t2", u=url, m=5, p=PRICE_OUT, mode="online") + "]"
    return load_config(None, [f"modifiers.cascade.tiers={tiers}", "modifiers.cascade.concurrency=2"])


def _check(task, answer):
    ok = len(answer.split()) >= task["need"]
    return Verdict(ok, 1.0 if ok else 0.0, f"{len(answer.split())} words")


TASKS = [{"id": f"m{i}", "domain": "reasoning", "prompt": f"Q{i}?", "need": need}
         for i, need in enumerate([3, 6, 3, 99])]


def _cascade(cfg, tmp_path):
    c = build_cascade(cfg, None, str(tmp_path / "cache"), str(tmp_path / "batches"))
    c.check = _check
    return c


def test_every_prompt_reaching_a_batch_tier_goes_in_one_batch_at_the_batch_price(tmp_path, fresh):
    c = _cascade(_cfg(fresh.base_url), tmp_path)
    rows = c.run(TASKS)
    assert [r["tier"] for r in rows] == ["t1", "t2", "t1", "t2"]
    assert [r["verified"] for r in rows] == [True, True, True, False]  # m3: last tier's answer, flagged
    assert [r["tiers_tried"] for r in rows] == ["t1", "t1,t2", "t1", "t1,t2"]
    # all four prompts went to t1 in one batch; only the two that failed there were asked online at t2
    assert len(fresh.submissions) == 1 and sorted(fresh.submissions[0]["custom_ids"]) == sorted(
        c.tiers[0].endpoint.key(*c.tiers[0].request(t)) for t in TASKS)
    assert len(fresh.batch_paid) == 4 and fresh.duplicate_paid_rows() == 0
    assert len(fresh.requests) == 2  # the online calls of t2
    t1 = c.tiers[0].stats
    assert t1.calls == 4 and t1.accepted == 2 and t1.failed_checks == 2
    paid_out = sum(p["completion_tokens"] for p in fresh.batch_paid)
    assert t1.cost_usd == pytest.approx(paid_out * PRICE_OUT * 0.5 / 1e6)  # the batch price, not online


def test_the_same_rows_as_the_online_cascade(tmp_path, fresh):
    batch_rows = _cascade(_cfg(fresh.base_url), tmp_path / "b").run(TASKS)
    online_rows = _cascade(_cfg(fresh.base_url, "online"), tmp_path / "o").run(TASKS)
    assert batch_rows == online_rows


def test_a_rerun_after_a_kill_collects_the_same_batch_and_after_the_end_pays_nothing(tmp_path, fresh):
    _cascade(_cfg(fresh.base_url), tmp_path).run(TASKS)  # killed before the stage closed its ledger
    fresh.submissions.clear()
    fresh.batch_paid.clear()
    again = _cascade(_cfg(fresh.base_url), tmp_path)
    rows = again.run(TASKS)
    assert fresh.submissions == [] and fresh.batch_paid == []  # nothing sent or paid twice
    assert [r["tier"] for r in rows] == ["t1", "t2", "t1", "t2"]
    assert again.tiers[0].stats.cost_usd > 0  # this run's report bills the batch the killed run paid for
    BatchLedger(str(tmp_path / "batches")).finish()  # the stage ended
    last = _cascade(_cfg(fresh.base_url), tmp_path)
    assert last.run(TASKS) == rows and fresh.submissions == [] and last.tiers[0].stats.cost_usd == 0.0


def test_a_row_the_batch_api_refused_moves_up_without_taking_the_tier_down(tmp_path, fresh):
    fresh.batch_faults.append({"fail_rows": 1, "status": 400})
    c = _cascade(_cfg(fresh.base_url), tmp_path)
    rows = c.run(TASKS)
    refused = [r for r in rows if r["tiers_tried"] == "t1,t2" and r["tier"] == "t2"]
    assert len(refused) == 3  # m1, m3 failed their check; one more was refused by the batch API
    assert c.tiers[0].stats.batch_failed == 1 and c.tiers[0].stats.down is None
    assert c.report(rows)["down"] == {}


def test_batch_mode_needs_an_http_tier_and_the_cache():
    with pytest.raises(CogumiError, match="mode batch needs an OpenAI-compatible endpoint"):
        load_config(None, ["modifiers.cascade.tiers=[{name: t1, mode: batch}]"])
    with pytest.raises(CogumiError, match="use_cache=true"):
        load_config(None, ["modifiers.cascade.tiers=[{name: t1, mode: batch, model: {backend: openai, "
                           "base_url: 'http://127.0.0.1:9/v1', model: x}}]", "modifiers.cascade.use_cache=false"])
