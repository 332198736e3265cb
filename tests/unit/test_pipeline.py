"""Pipeline sequencing (skip, force cascade, gates, failure) and the config each stage derives."""

from __future__ import annotations

import pytest
from rich.console import Console

from cogumi.artifacts import RunDir
from cogumi.config import load_config
from cogumi.errors import CogumiError
from cogumi.pipeline.contracts import StageResult
from cogumi.pipeline.runner import PipelineStage, run_stages
from cogumi.pipeline.stages import (
    PipelinePlan,
    compress_config,
    followup_train_config,
    modifiers_config,
    served_gguf,
    serving_config,
    train_config,
    trained_student,
)


@pytest.fixture
def cfg(tmp_path):
    return load_config("configs/local.yaml", [f"run.root={tmp_path}", "run.name=r"])


def _quiet() -> Console:
    return Console(file=open("/dev/null", "w"))  # noqa: SIM115


def _recorder(calls: list, skip: set[str]):
    def make(name: str):
        def fn(cfg, force):
            calls.append((name, force))
            return StageResult(name, skipped=name in skip and not force)
        return fn
    return make


def test_runner_skips_then_forces_everything_after_a_stage_that_ran(cfg):
    calls: list = []
    make = _recorder(calls, skip={"a", "b", "c"})
    stages = [PipelineStage(n, n, make(n)) for n in "abc"]
    out = run_stages(cfg, stages, console=_quiet())
    assert [o.status for o in out] == ["skipped"] * 3 and calls == [("a", False), ("b", False), ("c", False)]
    calls.clear()
    out = run_stages(cfg, stages, force={"b"}, console=_quiet())
    assert calls == [("a", False), ("b", True), ("c", True)]
    assert [o.status for o in out] == ["skipped", "ran", "ran"]


def test_runner_gates_and_names_the_failing_stage(cfg):
    calls: list = []
    make = _recorder(calls, skip=set())

    def boom(cfg, force):
        raise CogumiError("disk full", "somewhere", "free space")

    stages = [PipelineStage("a", "a", make("a"), gate=lambda c: (False, "not asked")),
              PipelineStage("b", "b", boom), PipelineStage("c", "c", make("c"))]
    seen: list = []
    with pytest.raises(CogumiError, match="stage 'b' failed: disk full"):
        run_stages(cfg, stages, console=_quiet(), outcomes=seen)
    assert calls == []  # a gated, c never reached
    assert [(o.name, o.status) for o in seen] == [("a", "gated"), ("b", "failed")] and "disk full" in seen[1].detail


def test_followup_training_continues_the_previous_adapter_at_the_lower_rate(cfg):
    a = train_config(cfg)
    assert a.train.merge and a.train.stage == "train" and a.train.learning_rate == cfg.train.learning_rate
    b = followup_train_config(cfg, "train-1b", "stage:compare/failures.jsonl", "train", cfg.pipeline.phase_1b)
    assert (b.train.stage, b.train.data, b.train.init_adapter) == \
        ("train-1b", "stage:compare/failures.jsonl", "stage:train/adapter")
    assert b.train.learning_rate == 5e-6 and b.train.merge and b.train.max_steps == 3  # local.yaml's phase_1b
    keep = followup_train_config(cfg, "train-1b", "x.jsonl", "train", cfg.pipeline.phase_1b.model_copy(
        update={"max_steps": None}))
    assert keep.train.max_steps == cfg.train.max_steps == 4
    assert cfg.train.stage == "train"  # the original is untouched


def test_downstream_stages_use_the_latest_trained_model(cfg, tmp_path):
    run = RunDir.open(cfg.run.root, cfg.run.name)
    student = trained_student(cfg, run, "train-1b")
    assert student.backend == "transformers" and student.model == f"{tmp_path}/r/train-1b/merged"
    assert compress_config(cfg, run, "train-1b").compress.model == f"{tmp_path}/r/train-1b/merged"
    assert compress_config(cfg, run, None).compress.model is None
    m = modifiers_config(cfg, run, "train")
    assert m.modifiers.base.model == f"{tmp_path}/r/train/merged" and m.student.backend == "transformers"


def test_serving_uses_the_compressed_gguf_adapters_and_router(cfg, tmp_path):
    from cogumi.artifacts import RunDir

    run = RunDir.open(cfg.run.root, cfg.run.name)
    with run.stage("compress.gguf").begin("h", {}) as rec:
        rec.metrics["served"] = "model-q4_k_m.gguf"  # the gguf step's promoted file
    gguf = served_gguf(run)
    assert gguf == f"{tmp_path}/r/compress.gguf/model-q4_k_m.gguf"
    s = serving_config(cfg, gguf, "/a/adapters", "/a/router").serve
    assert (s.base.backend, s.base.model, s.base.logits_all) == ("llamacpp", gguf, True)
    assert s.adapters_dir == "/a/adapters" and s.routing.artifact == "/a/router"
    assert serving_config(cfg, None, None, None).serve == cfg.serve


def test_phase_1c_gate_follows_the_decision_tree(cfg):
    plan = PipelinePlan(cfg)
    plan.latest_train = "train"
    for decision, when, runs in [("required", "required", True), ("optional", "required", False),
                                 ("optional", "optional", True), ("skip", "optional", False),
                                 ("skip", "always", True), ("required", "never", False)]:
        plan.decision = decision
        cfg.pipeline.distill_when = when
        assert plan.gate_1c(cfg)[0] is runs, (decision, when)
    plan.failures = 0
    assert plan.gate_1b(cfg) == (False, "the comparison found no failures")


def test_a_plan_without_train_continues_from_the_newest_finished_training(cfg):
    run = RunDir.open(cfg.run.root, cfg.run.name)
    for name in ("train", "train-1b"):
        with run.stage(name).begin("h"):
            pass
    cfg.pipeline.stages = ["compress", "modifiers"]
    assert PipelinePlan(cfg).latest_train == "train-1b"
    # a training stage its gate rejected is never continued from
    with run.stage("gate.train-1b").begin("h") as rec:
        rec.metrics.update(promoted=False, reason="planted")
    assert PipelinePlan(cfg).latest_train == "train"
    # nor one whose gate crashed before deciding
    with pytest.raises(RuntimeError), run.stage("gate.train-1b").begin("h"):
        raise RuntimeError("planted crash")
    assert run.stage("gate.train-1b").manifest().status == "failed"
    assert PipelinePlan(cfg).latest_train == "train"
    cfg.run.name = "untrained"  # nothing trained: later stages work on the starting model
    plan = PipelinePlan(cfg)
    assert plan.latest_train is None and plan._student().student == cfg.student


def test_bad_input_is_one_paragraph_naming_what_and_where(tmp_path):
    from typer.testing import CliRunner

    from cogumi.cli import app

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = CliRunner().invoke(app, ["pipeline", "-c", "configs/local.yaml", "--set", f"run.root={blocker}/sub",
                                   "--no-serve"])
    assert res.exit_code == 2 and "cannot write the run directory" in res.output and "run.root" in res.output
    res = CliRunner().invoke(app, ["pipeline", "-c", "configs/local.yaml", "--only", "nonsense"])
    assert res.exit_code == 2 and "unknown stage 'nonsense'" in res.output
    res = CliRunner().invoke(app, ["pipeline", "-c", "configs/local.yaml", "--set", f"run.root={tmp_path}",
                                   "--set", "pipeline.stages=[curate,bogus]"])
    assert res.exit_code == 2 and "pipeline.stages" in res.output


def test_an_untrainable_routing_set_degrades_to_the_built_in_router(cfg, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "r" / "modifiers" / "routing.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"prompt": f"p{i}", "domain": "code", "label": 1} for i in range(12)]), path)
    cfg.router.data.source = "modifiers"
    plan = PipelinePlan(cfg)
    out = plan.router(cfg, False)
    assert out.skipped is False and "no router trained" in out.degraded and "labels [1]" in out.degraded
    assert out.final_status() == "degraded" and out.metrics["router_trained"] is False
    assert plan.built_config().serve.routing.artifact is None  # serve falls back to the built-in router
