"""The embedded default (configs/local.yaml, SmolLM2-135M in NF4) trains on CPU through Ray Train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cogumi.config import load_config
from cogumi.train.stage import run_train
from tests.unit.train.helpers import sum_rows, write_parquet

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]


def test_embedded_smollm2_qlora_learns_a_repeated_batch(ray_local, embedded_hf_dir, tmp_path):
    rows = sum_rows(4) * 2  # one small batch, seen again and again
    write_parquet(tmp_path / "e" / "curate" / "curated.parquet", rows)
    cfg = load_config(REPO / "configs" / "local.yaml", [
        f"run.root={tmp_path}", "run.name=e", "train.max_steps=4", "train.learning_rate=0.002",
        "train.warmup_ratio=0.0", "train.max_seq_length=256", "train.batch_size=2", "train.grad_accum=1",
        "train.eval_steps=2", "train.save_steps=2", "train.val_fraction=0.25", "train.eval_max_tokens=12"])
    assert cfg.student.model == "embedded:smollm2" and cfg.train.qlora
    out = run_train(cfg)
    m = out["metrics"]
    assert m["global_step"] == 4 and m["last_train_loss"] < m["first_train_loss"]
    stage = tmp_path / "e" / "train"
    gens = [json.loads(x) for x in (stage / "generations.jsonl").read_text().splitlines()]
    assert [g["step"] for g in gens] == [2, 4] and all(g["response"].strip() for g in gens)

    from peft import PeftModel

    from cogumi.models.loading import load_tokenizer
    from cogumi.train.model import load_base

    tok = load_tokenizer(str(embedded_hf_dir))
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 3 plus 3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    base = load_base(str(embedded_hf_dir), qlora=True, device="cpu", dtype=torch.float32)
    with torch.no_grad():
        before = base(ids).logits[0, -1]
        after = PeftModel.from_pretrained(base, str(stage / "adapter")).eval()(ids).logits[0, -1]
    assert (after - before).abs().max() > 1e-2
