"""`cogumi tune`: a Tuner over a driver function that fits a TorchTrainer per trial (Train V2)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cogumi.config import load_config
from cogumi.train.tune import run_tune
from tests.unit.train.helpers import sum_rows, write_parquet

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]


def test_three_small_trials_finish_and_the_best_is_reported(ray_local, tiny_llama_dir, tmp_path):
    write_parquet(tmp_path / "t" / "curate" / "curated.parquet", sum_rows(8))
    cfg = load_config(REPO / "configs" / "tune.yaml", [
        f"run.root={tmp_path}", "run.name=t", f"student.model={tiny_llama_dir}", "student.backend=transformers",
        "train.max_steps=4", "train.eval_steps=2", "train.save_steps=2", "train.max_seq_length=128",
        "train.batch_size=2", "train.grad_accum=1", "train.val_fraction=0.25", "train.tune.num_samples=3",
        "train.tune.r=[4, 8]", "train.tune.alpha=[8, 16]", "train.tune.learning_rate=[0.001, 0.02]"])
    out = run_tune(cfg)
    stage = tmp_path / "t" / "tune"
    rows = list(csv.DictReader((stage / "results.csv").open()))
    assert out["trials"] == 3 and len(rows) == 3 and all(r["eval_loss"] for r in rows)
    best = json.loads((stage / "best.json").read_text())
    assert best["eval_loss"] == min(float(r["eval_loss"]) for r in rows)
    assert 0.001 <= best["config"]["learning_rate"] <= 0.02 and best["config"]["lora.r"] in (4, 8)
    assert (Path(best["checkpoint"]) / "adapter_model.safetensors").is_file()
    m = json.loads((stage / "manifest.json").read_text())
    assert m["status"] == "finished" and m["method"]["scheduler"].startswith("ASHA")
    assert m["method"]["search"].startswith(("random", "optuna")) and m["metrics"]["best_adapter"]
    assert (stage / "trials.png").read_bytes()[:4] == b"\x89PNG"
