"""Pipeline progress on a non-terminal console, and one status per stage in every place that shows it."""

from __future__ import annotations

import io
import json
import time

import pytest
from rich.console import Console

from cogumi.artifacts import RunDir
from cogumi.config import load_config
from cogumi.errors import CogumiError
from cogumi.pipeline.contracts import StageResult
from cogumi.pipeline.runner import STATUSES, PipelineStage, StageOutcome, end_line, key_figure, run_stages


@pytest.fixture
def cfg(tmp_path):
    return load_config("configs/local.yaml", [f"run.root={tmp_path}", "run.name=r"])


def _file_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=200), buf


def test_stage_start_end_and_heartbeat_lines_reach_a_non_terminal_console(cfg):
    console, buf = _file_console()

    def slow(cfg, force):
        time.sleep(0.35)
        return StageResult("train", summary={"skipped": False, "metrics": {
            "best_eval_loss": 1.5, "best_step": 4, "train_examples": 14, "val_examples": 2}})

    def boom(cfg, force):
        raise CogumiError("disk full", "somewhere", "free space")

    stages = [PipelineStage("curate", "teachers", lambda c, f: StageResult(
                  "curate", skipped=True, summary={"summary": {"rows": {"ok": 12, "input": 16}}})),
              PipelineStage("train", "QLoRA SFT (Phase 1A)", slow),
              PipelineStage("distill", "1C", slow, gate=lambda c: (False, "the comparison decided 'skip'")),
              PipelineStage("compress", "Phase 2", boom)]
    with pytest.raises(CogumiError):
        run_stages(cfg, stages, console=console, heartbeat_s=0.1)
    lines = buf.getvalue().splitlines()
    assert "▶ curate: teachers" in lines and "✓ curate skipped (up to date) · kept 12 of 16 rows" in lines
    assert "▶ train: QLoRA SFT (Phase 1A)" in lines
    assert any(line.startswith("… train still running (0s)") for line in lines)
    assert any(line.startswith("✓ train ran in 0s · best eval_loss 1.500 (step 4) · 14 train / 2 val") for line in lines)
    assert "· distill gated: the comparison decided 'skip'" in lines
    assert any(line.startswith("✗ compress failed after 0s: disk full") for line in lines)
    # the start line comes before the heartbeat, the heartbeat before the end line
    start = lines.index("▶ train: QLoRA SFT (Phase 1A)")
    beat = next(i for i, line in enumerate(lines) if "still running" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("✓ train ran"))
    assert start < beat < end


def test_a_headline_wins_and_a_summary_of_another_shape_gives_no_figure():
    assert key_figure("compress", {"headline": "serves model-q4_k_m.gguf, ppl 31.2"}) == \
        "serves model-q4_k_m.gguf, ppl 31.2"
    assert key_figure("compress", {"steps": {}}) == "" and key_figure("unknown", {"x": 1}) == ""
    o = StageOutcome("router", "degraded", 1.2, "no router trained (one label); serving the built-in router",
                     {"degraded": "no router trained (one label); serving the built-in router"})
    assert end_line(o) == "⚠ router degraded in 1s · no router trained (one label); serving the built-in router"


def test_console_summary_pipeline_record_and_report_agree_on_every_status(cfg, monkeypatch):
    import ray

    from cogumi.pipeline.commands import _record_pipeline, summary_line
    from cogumi.pipeline.report import write_report
    from cogumi.pipeline.stages import PipelinePlan

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "memory": 4e9})
    plan = PipelinePlan(cfg)

    def stage_fn(name: str, degraded: str = ""):
        def fn(cfg, force):
            with plan.run.stage(name).begin("h") as rec:
                if degraded:
                    rec.metrics.update({"status": "degraded", "degraded": degraded})
            return StageResult.from_summary(name, {"skipped": False, "degraded": degraded}, plan.run)
        return fn

    stages = [PipelineStage("curate", "c", stage_fn("curate")),
              PipelineStage("distill", "d", stage_fn("distill"), gate=lambda c: (False, "not asked")),
              PipelineStage("router", "r", stage_fn("router", "no router trained (one label)"))]
    outcomes = run_stages(cfg, stages, console=_file_console()[0])
    _record_pipeline(plan, cfg, outcomes, 1.0)
    write_report(plan.run)
    run = plan.run.path
    want = {"curate": "ran", "distill": "gated", "router": "degraded"}
    assert {o.name: summary_line(o).split()[1] for o in outcomes} == want
    recorded = json.loads(open(f"{run}/pipeline/pipeline.json").read())["stages"]
    assert {s["name"]: s["status"] for s in recorded} == want
    pipeline_md = open(f"{run}/pipeline/pipeline.md").read()
    report = open(f"{run}/report/report.md").read()
    for name, status in want.items():
        assert f"| {name} | {status} |" in pipeline_md and f"| {name} | {status} |" in report
    assert f"**degraded** {STATUSES['degraded']}" in report and "not asked" in report


def test_a_stage_rerun_after_the_pipeline_shows_its_own_manifest_status(cfg, monkeypatch):
    import ray

    from cogumi.pipeline.commands import _record_pipeline
    from cogumi.pipeline.report import write_report
    from cogumi.pipeline.stages import PipelinePlan

    monkeypatch.setattr(ray, "nodes", lambda: [])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    plan = PipelinePlan(cfg)
    _record_pipeline(plan, cfg, [StageOutcome("train", "failed", 3.0, "boom")], 3.0)
    time.sleep(1.1)  # manifests keep seconds
    with plan.run.stage("train").begin("h"):
        pass
    write_report(plan.run)
    report = open(f"{RunDir.open(cfg.run.root, 'r').path}/report/report.md").read()
    start = report.index("## Stages")
    table = report[start:report.index("\n## ", start)]  # the pipeline's own section keeps what it recorded then
    assert "| train | ran |" in table and "| train | failed |" not in table
