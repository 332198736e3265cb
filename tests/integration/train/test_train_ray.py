"""Training on a real local Ray cluster (Train V2): the CLI, outputs, 1B, failures and resume."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cogumi.cli import app
from cogumi.config import load_config
from cogumi.errors import CogumiError
from cogumi.train.stage import run_train
from tests.unit.train.helpers import failure_rows, sum_rows, write_jsonl, write_parquet

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
TINY = ["train.max_seq_length=128", "train.batch_size=2", "train.grad_accum=1", "train.warmup_ratio=0.0",
        "train.lora.r=8", "train.lora.alpha=16", "train.lora.dropout=0.0", "train.log_steps=1",
        "train.eval_prompts=[What is 1 plus 1]", "train.eval_max_tokens=4", "train.keep_best=2",
        "train.early_stopping.patience=null", "train.early_stopping.overfit_gap=null"]


def _sets(root: Path, name: str, model: Path, *extra: str) -> list[str]:
    return [f"run.root={root}", f"run.name={name}", f"student.model={model}", "student.backend=transformers",
            *TINY, *extra]


@pytest.fixture(scope="module")
def trained(ray_local, tiny_llama_dir, tmp_path_factory):
    """Phase 1A through the CLI: 6 QLoRA steps, checkpoints at 2, 4, 6, merged model."""
    root = tmp_path_factory.mktemp("runs")
    write_parquet(root / "a" / "curate" / "curated.parquet", sum_rows(8))
    sets = _sets(root, "a", tiny_llama_dir, "train.max_steps=6", "train.learning_rate=0.01", "train.eval_steps=2",
                 "train.save_steps=2", "train.val_fraction=0.25", "train.merge=true")
    args = ["train", "--config", str(REPO / "configs" / "local.yaml"), "--json"]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return {"root": root, "stage": root / "a" / "train", "sets": sets}


def test_cli_run_writes_adapter_tables_curves_and_manifest(trained):
    stage = trained["stage"]
    for rel in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json", "merged/model.safetensors",
                "loss_curve.png", "generations.jsonl", "log_history.json"):
        assert (stage / rel).is_file(), rel
    assert list((stage / "tensorboard").rglob("events.out.tfevents.*"))
    rows = list(csv.DictReader((stage / "checkpoints.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert all(math.isclose(float(r["perplexity"]), math.exp(float(r["eval_loss"])), rel_tol=1e-6) for r in rows)
    assert sum(r["best"] == "True" for r in rows) == 1 and sum(r["kept"] == "True" for r in rows) == 2  # best 2
    assert len(list((stage / "ray").glob("run-*/checkpoint-*"))) == 2
    gens = [json.loads(x) for x in (stage / "generations.jsonl").read_text().splitlines()]
    assert [g["step"] for g in gens] == [2, 4, 6]
    m = json.loads((stage / "manifest.json").read_text())
    assert m["status"] == "finished" and m["stage"] == "train"
    assert m["method"]["optimizer"].startswith("adamw_8bit") and m["method"]["base"].startswith("nf4")
    assert "bfd packing" in m["method"]["packing"] and "TorchTrainer" in m["method"]["trainer"]
    assert "dequantised" in m["method"]["merge"]
    assert m["metrics"]["global_step"] == 6 and m["metrics"]["last_train_loss"] < m["metrics"]["first_train_loss"]
    assert m["metrics"]["best_step"] == int(next(r["step"] for r in rows if r["best"] == "True"))


def test_the_adapter_loads_with_peft_and_changes_the_output(trained, tiny_llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    x = torch.randint(0, 1000, (1, 12), generator=torch.Generator().manual_seed(0))
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with torch.no_grad():
        before = base(x).logits
        after = PeftModel.from_pretrained(base, str(trained["stage"] / "adapter")).eval()(x).logits
        merged = AutoModelForCausalLM.from_pretrained(trained["stage"] / "merged").float()(x).logits
    assert (after - before).abs().max() > 1e-2
    assert (merged - after).abs().max() < (after - before).abs().max() / 2  # merged ≈ base + adapter


def test_an_unchanged_rerun_is_skipped(trained):
    cfg = load_config(REPO / "configs" / "local.yaml", trained["sets"])
    assert run_train(cfg)["skipped"] is True


def test_phase1b_continues_the_1a_adapter_on_failures(trained, tiny_llama_dir):
    write_jsonl(trained["root"] / "a" / "evaluate" / "failures.jsonl", failure_rows(6))
    cfg = load_config(REPO / "configs" / "phase1b.yaml", _sets(
        trained["root"], "a", tiny_llama_dir, "train.max_steps=2", "train.eval_steps=2", "train.save_steps=2"))
    out = run_train(cfg)
    stage = trained["root"] / "a" / "train-1b"
    m = json.loads((stage / "manifest.json").read_text())
    assert m["status"] == "finished" and m["method"]["lora"] == "continued from stage:train/adapter"
    assert set(m["inputs"]) >= {"data", "init_adapter"} and out["metrics"]["train_examples"] == 5
    assert json.loads((stage / "log_history.json").read_text())[0]["learning_rate"] <= 5e-6
    a1 = json.loads((trained["stage"] / "adapter" / "adapter_config.json").read_text())
    a2 = json.loads((stage / "adapter" / "adapter_config.json").read_text())
    assert (a1["r"], a1["lora_alpha"]) == (a2["r"], a2["lora_alpha"]) == (8, 16)
    from safetensors.torch import load_file

    w1 = load_file(trained["stage"] / "adapter" / "adapter_model.safetensors")
    w2 = load_file(stage / "adapter" / "adapter_model.safetensors")
    assert w1.keys() == w2.keys() and any(not torch.equal(w1[k], w2[k]) for k in w1)


@pytest.mark.slow
def test_a_worker_that_fails_once_is_restarted_from_its_last_checkpoint(ray_local, tiny_llama_dir, tmp_path):
    write_parquet(tmp_path / "b" / "curate" / "curated.parquet", sum_rows(6))
    cfg = load_config(None, _sets(tmp_path, "b", tiny_llama_dir, "train.max_steps=4", "train.eval_steps=2",
                                  "train.save_steps=2", "train.fail_once_at_step=3", "train.max_failures=1",
                                  "train.val_fraction=0.2"))
    out = run_train(cfg)
    assert out["metrics"]["resumed_from_step"] == 2 and out["metrics"]["global_step"] == 4
    assert list((tmp_path / "b" / "train" / "ray").glob("*.fault-injected"))  # the fault really fired


def test_rerunning_with_the_same_name_resumes_instead_of_restarting(ray_local, tiny_llama_dir, tmp_path):
    write_parquet(tmp_path / "c" / "curate" / "curated.parquet", sum_rows(6))
    cfg = load_config(None, _sets(tmp_path, "c", tiny_llama_dir, "train.max_steps=4", "train.eval_steps=2",
                                  "train.save_steps=2", "train.fail_once_at_step=3", "train.max_failures=0",
                                  "train.val_fraction=0.2"))
    with pytest.raises(CogumiError, match="re-run with the same run.name") as exc:
        run_train(cfg)
    assert "injected fault at step 3" in str(exc.value)
    stage = tmp_path / "c" / "train"
    assert json.loads((stage / "manifest.json").read_text())["status"] == "failed"
    assert [p.name for p in stage.glob("ray/run-*/checkpoint-*")] == ["checkpoint-0000002"]  # kept
    out = run_train(cfg)
    assert out["metrics"]["resumed_from_step"] == 2 and out["metrics"]["global_step"] == 4
    steps = [h["step"] for h in json.loads((stage / "log_history.json").read_text()) if "loss" in h]
    assert steps == [1, 2, 3, 4]  # one history: steps 1-2 from the first run, 3-4 after resuming


def test_gpus_on_a_cpu_cluster_are_refused_before_training(ray_local, tiny_llama_dir, tmp_path):
    write_parquet(tmp_path / "d" / "curate" / "curated.parquet", sum_rows(4))
    cfg = load_config(None, _sets(tmp_path, "d", tiny_llama_dir, "train.use_gpu=true"))
    with pytest.raises(CogumiError, match=r"GPU\(s\).*this Ray cluster has 0"):
        run_train(cfg)
    assert not (tmp_path / "d" / "train").exists()


@pytest.mark.slow
def test_two_cpu_workers_train_one_adapter_with_ddp(ray_local, tiny_llama_dir, tmp_path):
    write_parquet(tmp_path / "w" / "curate" / "curated.parquet", sum_rows(8))
    cfg = load_config(None, _sets(tmp_path, "w", tiny_llama_dir, "train.max_steps=2", "train.eval_steps=2",
                                  "train.save_steps=2", "train.batch_size=1", "train.num_workers=2",
                                  "train.cpus_per_worker=0.9", "train.val_fraction=0.25"))
    out = run_train(cfg)
    assert out["method"]["workers"] == "2 x CPU" and out["metrics"]["global_step"] == 2
    assert (tmp_path / "w" / "train" / "adapter" / "adapter_model.safetensors").is_file()
