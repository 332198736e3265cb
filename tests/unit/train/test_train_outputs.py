"""Checkpoint table, generations and loss curve from a run's history."""

from __future__ import annotations

import csv
import io
import json

from cogumi.train import outputs

HISTORY = [
    {"step": 2, "epoch": 0.5, "eval_loss": 2.0, "perplexity": 7.389, "train_loss": 2.3, "learning_rate": 1e-4,
     "generations": [{"prompt": "Hi", "response": "hello"}]},
    {"step": 4, "epoch": 1.0, "eval_loss": 1.5, "perplexity": 4.482, "train_loss": 1.7, "learning_rate": 5e-5,
     "generations": [{"prompt": "Hi", "response": "hello there"}]},
]


def test_checkpoint_table_has_loss_and_perplexity_per_checkpoint():
    rows = list(csv.DictReader(io.StringIO(outputs.checkpoint_table(HISTORY, {4}, 4))))
    assert [r["step"] for r in rows] == ["2", "4"]
    assert float(rows[1]["perplexity"]) == 4.482 and rows[1]["best"] == "True" and rows[0]["kept"] == "False"


def test_generations_one_line_per_checkpoint_and_prompt():
    lines = [json.loads(x) for x in outputs.generations_jsonl(HISTORY).splitlines()]
    assert [(x["step"], x["response"]) for x in lines] == [(2, "hello"), (4, "hello there")]


def test_loss_curve_is_a_png():
    log = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.2}, {"step": 2, "eval_loss": 2.0}]
    png = outputs.loss_curve_png(log, "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_adapter_files_leave_training_state_out(tmp_path):
    for name in ("adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt",
                 "trainer_state.json", "rng_state.pth", "probe.json", "tokenizer.json"):
        (tmp_path / name).write_text("x")
    names = [p.name for p in outputs.adapter_files(tmp_path)]
    assert names == ["adapter_config.json", "adapter_model.safetensors", "tokenizer.json"]
