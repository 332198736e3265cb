"""Promotion gates: a training stage that makes the model worse is rejected and the current model kept."""

from __future__ import annotations

import shutil

import pytest

from cogumi.artifacts import RunDir
from cogumi.config import load_config
from cogumi.evaluate.paired import compare, overall
from cogumi.pipeline.promotion import decide
from cogumi.pipeline.stages import PipelinePlan


def test_paired_interval_and_verdicts():
    same = compare("m", "d", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], "lower")
    assert same.verdict == "equal within noise" and same.diff == 0
    worse = compare("m", "d", [1.0, 1.1, 0.9, 1.0], [2.0, 2.2, 1.9, 2.1], "lower")
    assert worse.verdict == "worse" and worse.low > 0
    better = compare("acc", "d", [0, 0, 1, 0, 0, 1], [1, 1, 1, 1, 1, 1], "higher")
    assert better.verdict == "better" and better.low > 0 and better.a == pytest.approx(1 / 3)
    noisy = compare("acc", "d", [0, 1, 0, 1], [1, 0, 1, 0], "higher")
    assert noisy.verdict == "equal within noise" and noisy.low < 0 < noisy.high
    assert overall([same, better]) == "better" and overall([same, worse]) == "worse"
    assert overall([better, worse]) == "mixed" and overall([same]) == "equal within noise"
    with pytest.raises(ValueError):
        compare("m", "d", [1.0], [], "lower")


def test_gate_rule_rejects_forgetting_beyond_budget_and_any_worse_domain():
    text_ok = compare("text: reference NLL/token", "d", [3.0, 3.0], [3.05, 3.1], "lower", 3.0, 3.06)
    assert decide([text_ok], 0.05)[0]
    text_bad = compare("text: reference NLL/token", "d", [3.0, 3.0], [3.3, 3.4], "lower", 3.0, 3.35)
    ok, why = decide([text_bad], 0.05)
    assert not ok and "held-out text" in why and "+11.7%" in why
    math_worse = compare("math: reference NLL/token", "d", [1.0, 1.1, 0.9], [2.0, 2.1, 2.0], "lower")
    ok, why = decide([text_ok, math_worse], 0.05)
    assert not ok and "math" in why


@pytest.fixture
def plan_with_trained(tmp_path, tiny_llama_dir):
    cfg = load_config("configs/local.yaml", [f"run.root={tmp_path}", "run.name=r", "pipeline.gate.math_items=4",
                                             "pipeline.gate.code_items=2", f"student.model={tiny_llama_dir}",
                                             "student.backend=transformers"])
    return cfg, PipelinePlan(cfg)


def _write_merged(cfg, stage: str, src, noise: float) -> None:
    """A finished training stage whose merged model is ``src`` plus Gaussian noise on every weight."""
    from tests.support.weights import perturb_weights

    run = RunDir.open(cfg.run.root, cfg.run.name)
    with run.stage(stage).begin("h") as rec:
        out = rec.path("merged")
        shutil.copytree(src, out)
        if noise:
            perturb_weights(src, out, noise)


def test_a_training_stage_that_raises_perplexity_is_rejected_and_the_start_model_kept(plan_with_trained,
                                                                                       tiny_llama_dir, tmp_path):
    cfg, plan = plan_with_trained
    _write_merged(cfg, "train", tiny_llama_dir, noise=0.5)  # planted: a "training" that wrecks the model
    out = plan._promote(cfg, "train", {"skipped": False}, force=False)
    assert out.final_status() == "rejected" and "keeping the starting model" in out.degraded
    assert out.outputs["merged"] == f"{tmp_path}/r/train/merged"
    assert plan.latest_train is None and plan._student().student == cfg.student
    gate = RunDir.open(cfg.run.root, cfg.run.name).stage("gate.train")
    m = gate.manifest()
    assert m.metrics["promoted"] is False and "held-out text" in m.metrics["reason"]
    assert "REJECTED" in open(gate.file("report.md")).read()
    # an unchanged rerun reuses the decision without scoring again
    again = plan._promote(cfg, "train", {"skipped": True}, force=False)
    assert again.final_status() == "skipped" and again.status == "rejected" and gate.manifest().ended_at == m.ended_at
    # a later plan never continues from the rejected stage
    cfg.pipeline.stages = ["compress"]
    assert PipelinePlan(cfg).latest_train is None


def test_a_training_stage_that_does_no_harm_is_promoted(plan_with_trained, tiny_llama_dir):
    cfg, plan = plan_with_trained
    _write_merged(cfg, "train", tiny_llama_dir, noise=0.0)
    out = plan._promote(cfg, "train", {"skipped": False}, force=False)
    assert out.final_status() == "ran" and out.headline.startswith("promoted")
    assert plan.latest_train == "train"


def test_final_eval_headline_names_the_verdict_and_what_moved():
    from cogumi.pipeline.final_eval import headline

    better = compare("math: reference NLL/token", "d", [5.0, 5.2, 5.1], [4.0, 4.3, 4.1], "lower")
    worse = compare("text: reference NLL/token", "d", [3.0, 3.1, 3.2], [3.3, 3.35, 3.5], "lower")
    same = compare("code: pass@1 (sandbox)", "d", [0, 1], [1, 0], "higher")
    line = headline(overall([better, worse, same]), [better, worse, same])
    assert "MIXED" in line and "better on math" in line and "worse on text" in line
    assert "1 of 3 metrics equal within noise" in line and "n=3" in line
    assert "EQUAL WITHIN NOISE" in headline(overall([same]), [same])
