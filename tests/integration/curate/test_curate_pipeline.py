"""The whole curation on local Ray against a real local OpenAI-compatible server (teacher and judge)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cogumi.schema import CURATED_SCHEMA
from tests.integration.curate.conftest import drain, write_config, write_prompts

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]

GOOD = [
    {"instruction": "What is 2 + 2?", "domain": "math", "difficulty": "easy"},
    {"prompt": "Name one primary colour."},
    {"instruction": "Write a short greeting for a new colleague.", "domain": "conversation"},
]


def stage_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "t" / "curate"


def test_curation_end_to_end_schema_report_accounting_and_cache(ray_local, server, tmp_path, cli):
    lines = [GOOD[0], GOOD[1], b'{"instruction": "broken json', GOOD[0], {"instruction": ""},
             b"\xff\xfe not utf-8", GOOD[2], {"instruction": "Hi", "domain": "poetry"}]
    prompts = write_prompts(tmp_path / "prompts.jsonl", lines)
    code, out = cli("curate", "--config", str(write_config(tmp_path, server, prompts)))
    assert code == 0, out
    stage = stage_dir(tmp_path)

    rows = pq.read_table(stage / "rows.parquet").to_pylist()
    assert len(rows) == len(lines)  # every input row accounted for
    assert {r["status"] for r in rows} <= {"ok", "error", "filtered"}
    by_line = {int(r["location"].rsplit(":", 1)[1]): r for r in rows}
    for line in (3, 5, 6, 8):
        assert by_line[line]["status"] == "error" and f"prompts.jsonl:{line}:" in by_line[line]["reason"]
    assert "malformed JSON" in by_line[3]["reason"] and "not valid UTF-8" in by_line[6]["reason"]
    assert "unknown domain 'poetry'" in by_line[8]["reason"]
    first, copy = by_line[1], by_line[4]  # the same prompt twice: greedy math answers are identical
    assert not (first["status"] == "ok" and copy["status"] == "ok")
    if "ok" in (first["status"], copy["status"]):
        dup = copy if first["status"] == "ok" else first
        assert dup["stage"] == "dedup" and dup["reason"].startswith("exact duplicate of")
    for r in rows:
        if r["status"] != "error":
            assert r["teacher"] == "local" and r["completion_tokens"] > 0

    curated = pq.read_table(stage / "curated.parquet")
    assert curated.schema.equals(CURATED_SCHEMA)
    kept = [r for r in rows if r["status"] == "ok"]
    assert curated.num_rows == len(kept) >= 1
    assert set(curated.column("teacher").to_pylist()) == {"local"}
    assert all(1 <= q <= 10 for q in curated.column("quality_score").to_pylist() if q is not None)
    nested = [json.loads(x) for x in (stage / "curated.jsonl").read_text().splitlines()]
    assert len(nested) == len(kept) and set(nested[0]["metadata"]) == {
        "domain", "difficulty", "teacher", "quality_score", "tokens", "source"}

    stats = json.loads((stage / "stats.json").read_text())
    assert stats["accounted"] and stats["rows"]["input"] == len(lines)
    assert stats["cost"]["local"]["calls"] >= 3 and stats["cost"]["local"]["usd"] > 0
    assert stats["cost"]["judge"]["prompt_tokens"] > 0
    assert (stage / "report.png").stat().st_size > 1000
    report = (stage / "report.md").read_text()
    assert "every row accounted for" in report and "| local |" in report
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["metrics"]["rows_input"] == len(lines)
    assert manifest["metrics"]["cost"]["local"]["prompt_tokens"] > 0
    assert "json_schema" in manifest["method"]["judge"] and "MinHash-LSH" in manifest["method"]["dedup"]
    assert "curated.parquet" in manifest["outputs"] and not any(k.startswith("work/") for k in manifest["outputs"])

    code, out = cli("curate", "--config", str(stage.parents[2] / "curate.yaml"))
    assert code == 0 and "up to date" in out
    server.requests.clear()
    code, out = cli("curate", "--config", str(stage.parents[2] / "curate.yaml"), "--force")
    assert code == 0, out
    assert server.requests == []  # the rerun paid for nothing
    rerun = json.loads((stage / "stats.json").read_text())
    assert rerun["cost_total_usd"] == 0 and rerun["cost"]["local"]["cached_calls"] >= 3
    assert pq.read_table(stage / "curated.parquet").num_rows == curated.num_rows


def test_faulty_teacher_every_row_accounted_and_rerun_is_free(ray_local, server, tmp_path, cli):
    prompts = write_prompts(tmp_path / "prompts.jsonl", [
        {"instruction": f"Give one fact about the number {n}.", "domain": "math"} for n in range(5)])
    cfg = write_config(tmp_path, server, prompts, curate={"judge": {"enabled": False}, "dedup": {"enabled": False}})
    # (timeouts are injected in tests/unit/curate/test_client_faults.py: the test server's timeout
    # fault stalls every request for 5 s, which on a loaded 2-core machine cascades through a pipeline)
    server.faults.extend(["429", "500", "garbage", "500", "429", "garbage"])
    code, out = cli("curate", "--config", str(cfg))
    drain(server)
    assert code == 0, out
    rows = pq.read_table(stage_dir(tmp_path) / "rows.parquet").to_pylist()
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    # one server request per attempt (no hidden client retries); at least the 6 faults were retried
    assert sum(r["attempts"] for r in rows) == len(server.requests) >= 5 + 6
    assert max(r["attempts"] for r in rows) > 1
    server.requests.clear()
    code, out = cli("curate", "--config", str(cfg), "--force")
    assert code == 0, out
    assert server.requests == []  # rows that succeeded are never asked again


def test_exhausted_retries_are_error_rows_not_a_failed_run(ray_local, server, tmp_path, cli):
    prompts = write_prompts(tmp_path / "prompts.jsonl", [{"instruction": "Say yes.", "domain": "conversation"}])
    cfg = write_config(tmp_path, server, prompts, curate={
        "judge": {"enabled": False}, "dedup": {"enabled": False}, "retry": {"max_attempts": 2}})
    server.faults.extend(["500", "500"])
    code, out = cli("curate", "--config", str(cfg))
    drain(server)
    assert code == 0, out
    (row,) = pq.read_table(stage_dir(tmp_path) / "rows.parquet").to_pylist()
    assert row["status"] == "error" and row["stage"] == "teacher"
    assert "HTTP 500" in row["reason"] and "after 2 attempt(s): server, server" in row["reason"]
    assert pq.read_table(stage_dir(tmp_path) / "curated.parquet").num_rows == 0


def _session_processes(session_dir: str) -> list[int]:
    """Processes holding files in a Ray session folder (its raylet, agents, workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and any(os.readlink(fd).startswith(session_dir + "/")
                                            for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _usd(paid, price_in=1.0, price_out=2.0):
    return sum(p["prompt_tokens"] * price_in + p["completion_tokens"] * price_out for p in paid) / 1e6


def test_duplicate_input_ids_stop_the_run_before_any_call(ray_local, server, tmp_path, cli):
    prompts = write_prompts(tmp_path / "prompts.jsonl", [
        {"id": "a", "instruction": "Say yes."}, {"id": "b", "instruction": "Say no."},
        {"id": "a", "instruction": "Say maybe."}])
    cfg = write_config(tmp_path, server, prompts, curate={"judge": {"enabled": False}})
    code, out = cli("curate", "--config", str(cfg))
    assert code != 0
    assert "prompts.jsonl:3: id 'a' is already used at" in " ".join(out.split()) and "prompts.jsonl:1" in out
    assert server.requests == []  # refused before any teacher was paid


@pytest.mark.slow
def test_killed_run_restarts_and_finishes_without_paying_twice(ray_local, server, tmp_path, cli):
    """kill -9 of a driver that started its own Ray, mid-run; the rerun pays no call twice and cleans up."""
    n = 6
    prompts = write_prompts(tmp_path / "prompts.jsonl", [
        {"id": f"colour-{i}", "instruction": f"Write one sentence about the colour number {i}.", "domain": "creative"}
        for i in range(n)])
    cfg = write_config(tmp_path, server, prompts, curate={
        "judge": {"enabled": False}, "dedup": {"enabled": False}, "max_new_tokens": 32,
        "teachers": [{"name": "local", "concurrency": 1, "rpm": 6000, "tpm": 10_000_000,
                      "price_in_per_mtok": 1.0, "price_out_per_mtok": 2.0,
                      "model": {"backend": "openai", "base_url": server.base_url, "model": "local-teacher"}}],
        "ray": {"batch_size": 1, "teacher_workers": 1}})
    # no --ray-address and no RAY_ADDRESS: the driver starts (and owns) a local Ray, as a user's would
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)}
    server.faults.extend(["ok", "ok", "hold"])  # two calls answered, the third parked: the kill lands there
    proc = subprocess.Popen([sys.executable, str(REPO / "jobs" / "curate.py"), "--config", str(cfg)],
                            env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert server.holding.wait(240), "the run never reached its third call"
        manifest = json.loads((stage_dir(tmp_path) / "manifest.json").read_text())
        (record,) = (tmp_path / "runs" / "t" / ".local-ray").glob("*.json")
        session = json.loads(record.read_text())["session_dir"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as the OOM killer or `kill -9 <pid>` would
        proc.wait()
    assert manifest["status"] == "running" and manifest["pid"] == proc.pid
    cache = tmp_path / "runs" / "cache" / "responses"
    deadline = time.time() + 60
    while not server.dropped and time.time() < deadline:  # Ray stops the job's workers: the client goes away
        time.sleep(0.2)
    server.release.set()
    assert len(server.dropped) == 1  # the parked call's client died: never answered, never billed
    paid_killed = list(server.paid)
    done = len(list(cache.rglob("*.json")))
    assert done == len(paid_killed) == 2  # every call paid in the killed run is in the cache

    server.paid.clear()
    code, out = cli("curate", "--config", str(cfg))
    assert code == 0, out
    assert f"the previous run (pid {proc.pid}, started {manifest['started_at']}) was killed; resuming from its " \
           "cached calls" in " ".join(out.split())
    assert _session_processes(session) == []  # nothing of the killed run's Ray survives the rerun
    assert not list(record.parent.glob("*.json"))
    final = json.loads((stage_dir(tmp_path) / "manifest.json").read_text())
    assert final["status"] == "finished" and f"pid {proc.pid}" in final["previous"]

    rows = pq.read_table(stage_dir(tmp_path) / "rows.parquet").to_pylist()
    assert len(rows) == n and all(r["status"] == "ok" for r in rows)
    assert sorted(r["id"] for r in rows) == [f"colour-{i}" for i in range(n)]  # input ids kept
    assert sum(bool(r["cached"]) for r in rows) == done
    calls = Counter(p["call"] for p in paid_killed + server.paid)
    assert len(calls) == n and set(calls.values()) == {1}  # no call paid twice
    cost = json.loads((stage_dir(tmp_path) / "stats.json").read_text())["cost"]["local"]
    assert cost["calls"] == len(server.paid) == n - done
    assert cost["usd"] == pytest.approx(_usd(server.paid), abs=1e-6)  # the bill equals the server's
    assert cost["saved_usd"] == pytest.approx(_usd(paid_killed), abs=1e-6)  # paid by the killed run, reused
