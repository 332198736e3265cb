"""The whole curation on local Ray against a real local OpenAI-compatible server (teacher and judge)."""

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


@pytest.mark.slow
def test_killed_run_restarts_and_finishes_without_paying_twice(ray_local, server, tmp_path, cli):
    n = 6
    prompts = write_prompts(tmp_path / "prompts.jsonl", [
        {"instruction": f"Write one sentence about the colour number {i}.", "domain": "creative"} for i in range(n)])
    cfg = write_config(tmp_path, server, prompts, curate={
        "judge": {"enabled": False}, "dedup": {"enabled": False}, "max_new_tokens": 32,
        "teachers": [{"name": "local", "concurrency": 1, "rpm": 6000, "tpm": 10_000_000,
                      "model": {"backend": "openai", "base_url": server.base_url, "model": "local-teacher"}}],
        "ray": {"batch_size": 1}})
    address = ray_local.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(REPO / "jobs" / "curate.py"), "--config", str(cfg),
                             "--ray-address", address], env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = tmp_path / "runs" / "cache" / "responses"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(cache.rglob("*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(cache.rglob("*.json")))
    assert 2 <= done < n, "the run was not interrupted mid-way"
    manifest = json.loads((stage_dir(tmp_path) / "manifest.json").read_text())
    assert manifest["status"] == "running"  # killed: never finished
    time.sleep(1.0)
    server.requests.clear()
    code, out = cli("curate", "--config", str(cfg))
    assert code == 0, out
    rows = pq.read_table(stage_dir(tmp_path) / "rows.parquet").to_pylist()
    assert len(rows) == n and all(r["status"] == "ok" for r in rows)
    assert len(server.requests) == n - done
    assert sum(bool(r["cached"]) for r in rows) == done
