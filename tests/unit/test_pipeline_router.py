"""An untrainable routing set is a recorded result: the rerun skips it and serving keeps the built-in router."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cogumi.config import load_config
from cogumi.errors import CogumiError
from cogumi.pipeline.stages import PipelinePlan


@pytest.fixture
def cfg(tmp_path):
    cfg = load_config("configs/local.yaml", [f"run.root={tmp_path}", "run.name=r", "router.data.source=modifiers"])
    path = tmp_path / "r" / "modifiers" / "routing.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"prompt": f"p{i}", "domain": "code", "label": 1} for i in range(12)]), path)
    return cfg


def test_an_unchanged_rerun_skips_the_recorded_result_in_under_a_second(cfg, tmp_path):
    plan = PipelinePlan(cfg)
    first = plan.router(cfg, False)
    assert first.skipped is False and "no router trained" in first.degraded
    stage = tmp_path / "r" / "router"
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["metrics"]["router_trained"] is False and manifest["metrics"]["status"] == "degraded"
    assert "labels [1]" in manifest["metrics"]["degraded"]
    assert not (stage / "router.json").exists() and not (stage / "weights.safetensors").exists()
    assert "No router trained" in (stage / "report.md").read_text()

    t0 = time.perf_counter()
    again = PipelinePlan(cfg).router(cfg, False)
    assert time.perf_counter() - t0 < 1.0
    assert again.skipped is True and again.degraded == first.degraded
    assert PipelinePlan(cfg).built_config().serve.routing.artifact is None  # the built-in router serves


def test_a_forced_rerun_clears_an_earlier_router_from_the_folder(cfg, tmp_path):
    stage = tmp_path / "r" / "router"
    stage.mkdir()
    (stage / "router.json").write_text("{}")  # left by an earlier run that trained one
    (stage / "weights.safetensors").write_bytes(b"x")
    PipelinePlan(cfg).router(cfg, True)
    assert sorted(p.name for p in stage.iterdir()) == ["manifest.json", "metrics.json", "report.md"]
    assert PipelinePlan(cfg).built_config().serve.routing.artifact is None


def test_the_router_command_still_calls_an_untrainable_set_an_error(cfg):
    from cogumi.route.stage import router_stage

    PipelinePlan(cfg).router(cfg, False)  # recorded once by the pipeline
    with pytest.raises(CogumiError, match="both labels"):
        router_stage(cfg, False)  # `cogumi router` does not accept the recorded fallback


def test_serving_points_at_a_router_folder_only_when_it_holds_a_router(cfg, tmp_path):
    plan = PipelinePlan(cfg)
    with plan.run.stage("router").begin("h") as rec:
        rec.write_text("router.json", "{}")
    assert plan.built_config().serve.routing.artifact == f"{tmp_path}/r/router"
