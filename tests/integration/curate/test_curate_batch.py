"""Curation with teachers and judge in ``mode: batch`` against the real local batch server (issue 16)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.integration.curate.conftest import write_config, write_prompts
from tests.support.batch_server import LocalBatchServer
from tests.support.canned_backend import CannedBackend

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
BATCH = {"poll_s": 0.2}


@pytest.fixture(scope="module")
def batch_server():
    server = LocalBatchServer(CannedBackend(words=30), delay_s=0.3).start()
    yield server
    server.stop()


@pytest.fixture
def bserver(batch_server):
    for log in (batch_server.batch_faults, batch_server.submissions, batch_server.batch_paid,
                batch_server.requests, batch_server.paid):
        log.clear()
    batch_server.delay_s = 0.3
    yield batch_server
    batch_server.wait_idle()


def prompts(tmp_path: Path, n: int) -> Path:
    return write_prompts(tmp_path / "prompts.jsonl", [
        {"id": f"q-{i}", "instruction": f"Explain idea number {i} in two sentences?", "domain": "science"}
        for i in range(n)])


def batch_config(tmp_path: Path, server, n: int, **curate):
    over = {"teachers": [{"name": "local", "mode": "batch", "batch": BATCH, "rpm": 6000, "tpm": 10_000_000,
                          "price_in_per_mtok": 1.0, "price_out_per_mtok": 2.0,
                          "model": {"backend": "openai", "base_url": server.base_url, "model": "local-teacher"}}],
            "judge": {"mode": "batch", "batch": BATCH, "price_in_per_mtok": 0.15, "price_out_per_mtok": 0.6},
            "dedup": {"enabled": False}} | curate
    return write_config(tmp_path, server, prompts(tmp_path, n), curate=over)


def stage(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "t" / "curate"


def usd(paid: list[dict], ids: set[str], pin: float, pout: float) -> float:
    return sum(p["prompt_tokens"] * pin + p["completion_tokens"] * pout for p in paid if p["custom_id"] in ids) / 1e6


def test_batch_curation_bills_the_batch_price_and_shares_answers_with_online(ray_local, bserver, tmp_path, cli):
    n = 6
    cfg = batch_config(tmp_path, bserver, n)
    code, out = cli("curate", "--config", str(cfg))
    assert code == 0, out
    rows = pq.read_table(stage(tmp_path) / "rows.parquet").to_pylist()
    assert len(rows) == n and all(r["status"] == "ok" for r in rows)  # every input row accounted
    assert bserver.requests == []  # nothing went online
    teacher_batch, judge_batch = bserver.submissions
    assert {r["batch_id"] for r in rows} == {teacher_batch["batch_id"]}
    assert {r["judge_batch_id"] for r in rows} == {judge_batch["batch_id"]}
    assert bserver.duplicate_submissions() == 0 and bserver.duplicate_paid_rows() == 0
    stats = json.loads((stage(tmp_path) / "stats.json").read_text())
    local, judge = stats["cost"]["local"], stats["cost"]["judge"]
    paid_teacher = usd(bserver.batch_paid, set(teacher_batch["custom_ids"]), 0.5, 1.0)  # half the online price
    assert local["usd"] == pytest.approx(paid_teacher, abs=1e-6) and local["batch_calls"] == n
    assert local["online_equivalent_usd"] == pytest.approx(2 * paid_teacher, abs=1e-6)
    assert judge["usd"] == pytest.approx(usd(bserver.batch_paid, set(judge_batch["custom_ids"]), 0.075, 0.3),
                                         abs=1e-6)
    report = (stage(tmp_path) / "report.md").read_text()
    assert "online-equivalent USD" in report and "batch API" in report
    assert list((stage(tmp_path) / "batches").glob("finished-*.jsonl"))  # the ledger is kept as a record

    # the same curation online finds every answer in the shared response cache
    cfg.write_text(cfg.read_text().replace("mode: batch", "mode: online"))
    code, out = cli("curate", "--config", str(cfg), "--force")
    assert code == 0, out
    assert bserver.requests == [] and len(bserver.submissions) == 2
    again = json.loads((stage(tmp_path) / "stats.json").read_text())
    assert again["cost_total_usd"] == 0 and again["cost"]["local"]["cached_calls"] == n


def test_rows_the_batch_api_refused_are_error_rows_with_the_reason(ray_local, bserver, tmp_path, cli):
    bserver.batch_faults.append({"fail_rows": 1, "status": 400})
    cfg = batch_config(tmp_path, bserver, 3, judge={"enabled": False})
    code, out = cli("curate", "--config", str(cfg))
    assert code == 0, out
    rows = pq.read_table(stage(tmp_path) / "rows.parquet").to_pylist()
    errors = [r for r in rows if r["status"] == "error"]
    assert len(rows) == 3 and len(errors) == 1 and "injected failure 400" in errors[0]["reason"]
    assert len(bserver.submissions) == 1 and bserver.requests == []  # not resubmitted, not sent online


@pytest.mark.slow
def test_killed_between_submit_and_collect_the_rerun_collects_the_same_batches(ray_local, bserver, tmp_path, cli):
    """kill -9 of the driver while its batches run; the rerun submits nothing again and pays nothing twice."""
    n = 5
    bserver.delay_s = 6.0  # long enough to kill the driver while the batch is in progress
    cfg = batch_config(tmp_path, bserver, n, judge={"enabled": False})
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)}
    log = open(tmp_path / "driver.log", "wb")
    proc = subprocess.Popen([sys.executable, str(REPO / "jobs" / "curate.py"), "--config", str(cfg)],
                            env=env, cwd=tmp_path, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    ledger = stage(tmp_path) / "batches" / "ledger.jsonl"
    try:
        deadline = time.time() + 180
        while not (ledger.exists() and '"submitted"' in ledger.read_text()):
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.time() < deadline, "the run never submitted a batch"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as `kill -9 <pid>` would
        proc.wait()
        log.close()
    submitted = [json.loads(x)["batch_id"] for x in ledger.read_text().splitlines() if '"submitted"' in x]
    assert len(bserver.submissions) == 1 and bserver.batch_paid == []  # killed before the batch finished

    bserver.delay_s = 0.3
    code, out = cli("curate", "--config", str(cfg))
    assert code == 0, out
    (kept,) = (stage(tmp_path) / "batches").glob("finished-*.jsonl")
    events = [json.loads(x) for x in kept.read_text().splitlines()]
    assert [e["batch_id"] for e in events if e["event"] == "submitted"] == submitted  # the same batch, collected
    assert len(bserver.submissions) == 1 and bserver.duplicate_submissions() == 0
    assert len(bserver.batch_paid) == n and bserver.duplicate_paid_rows() == 0
    rows = pq.read_table(stage(tmp_path) / "rows.parquet").to_pylist()
    assert sorted(r["id"] for r in rows) == [f"q-{i}" for i in range(n)]
    assert all(r["status"] == "ok" and r["batch_id"] == submitted[0] for r in rows)
    stats = json.loads((stage(tmp_path) / "stats.json").read_text())
    assert stats["cost"]["local"]["usd"] == pytest.approx(usd(bserver.batch_paid, set(
        bserver.submissions[0]["custom_ids"]), 0.5, 1.0), abs=1e-6)
