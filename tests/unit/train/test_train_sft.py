"""The training core without Ray: real QLoRA (NF4 + LoRA, TRL SFTTrainer) on the tiny Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import torch

from cogumi.train.callbacks import InjectedFault
from cogumi.train.config import TrainConfig
from cogumi.train.sft import LocalReporter, SFTJob, run_sft
from tests.unit.train.helpers import sum_rows

FAST = dict(max_seq_length=128, batch_size=2, grad_accum=1, log_steps=1, warmup_ratio=0.0,
            lora={"r": 8, "alpha": 16, "dropout": 0.0}, eval_prompts=["What is 1 plus 1?"], eval_max_tokens=4,
            early_stopping={"patience": None, "overfit_gap": None})


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**FAST, **kw})


def test_qlora_loss_falls_on_a_repeated_batch_and_the_adapter_changes_output(tiny_llama_dir, tmp_path):
    rows = sum_rows(4)
    rep = LocalReporter(tmp_path / "ckpt")
    cfg = _cfg(max_steps=8, learning_rate=1e-2, eval_steps=4, save_steps=4)
    summary = run_sft(SFTJob(cfg, str(tiny_llama_dir), rows, rows[:2]), rep)
    assert summary["global_step"] == 8 and summary["stop_reason"] is None
    assert summary["method"]["base"].startswith("nf4") and summary["method"]["optimizer"] == "adamw_8bit"
    log = json.loads((tmp_path / "ckpt" / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in log if "loss" in h]
    assert max(losses[-2:]) < losses[0] - 0.2, losses  # random 49k-vocab model: starts at ~ln(49152)
    assert [r["step"] for r in rep.reports] == [4, 8] and rep.reports[1]["eval_loss"] < rep.reports[0]["eval_loss"]
    probe = json.loads((tmp_path / "ckpt" / "checkpoint-8" / "probe.json").read_text())
    assert [h["step"] for h in probe["history"]] == [4, 8] and probe["history"][1]["generations"][0]["prompt"]

    from peft import PeftModel

    from cogumi.train.model import load_base

    base = load_base(str(tiny_llama_dir), qlora=True, device="cpu", dtype=torch.float32)
    x = torch.randint(0, 1000, (1, 10))
    with torch.no_grad():
        before = base(x).logits
        tuned = PeftModel.from_pretrained(base, str(tmp_path / "ckpt" / "checkpoint-8")).eval()
        after = tuned(x).logits
    assert (after - before).abs().max() > 1e-2


@pytest.mark.slow  # the Ray resume test covers the same path end to end
def test_resume_continues_from_the_checkpoint_step(tiny_llama_dir, tmp_path):
    rows = sum_rows(6)
    rep = LocalReporter(tmp_path / "ckpt")
    marker = (pafs.LocalFileSystem(), str(tmp_path / "fault"))
    job = SFTJob(_cfg(max_steps=4, learning_rate=1e-2, eval_steps=2, save_steps=2, fail_once_at_step=3),
                 str(tiny_llama_dir), rows, rows[:1], fault_marker=marker)
    with pytest.raises(InjectedFault):
        run_sft(job, rep)
    assert [r["step"] for r in rep.reports] == [2]
    summary = run_sft(job, rep)  # same job again: the marker keeps the fault from firing
    assert summary["resumed_from_step"] == 2 and summary["global_step"] == 4
    assert [r["step"] for r in rep.reports] == [2, 4]
    history = json.loads((Path(rep.restore()) / "probe.json").read_text())["history"]
    assert [h["step"] for h in history] == [2, 4]  # the history carried over the restart


def test_loss_rules_lower_the_lr_then_stop(tiny_llama_dir, tmp_path):
    rows = sum_rows(4)
    rules = {"after_steps": 1, "reduce_above": 1.0, "reduce_factor": 0.5, "stop_above": 1000.0}
    s = run_sft(SFTJob(_cfg(max_steps=3, learning_rate=1e-3, lr_scheduler="constant_with_warmup",
                            explosion=rules, save_steps=100, eval_steps=100), str(tiny_llama_dir), rows, []),
                LocalReporter(tmp_path / "a"))
    assert s["events"][0]["event"] == "lr_reduced" and s["events"][0]["step"] == 1 and s["global_step"] == 3
    stop = run_sft(SFTJob(_cfg(max_steps=3, explosion={**rules, "stop_above": 1.0}, save_steps=1, eval_steps=1),
                          str(tiny_llama_dir), rows, rows[:1]), LocalReporter(tmp_path / "b"))
    assert stop["stop_reason"] == "loss_explosion" and stop["global_step"] == 1
    assert not list((tmp_path / "b").glob("checkpoint-*"))  # the exploded state is not saved


def test_nan_loss_stops_and_is_not_checkpointed(tiny_llama_dir, tmp_path):
    rows = sum_rows(4)
    rep = LocalReporter(tmp_path / "c")
    s = run_sft(SFTJob(_cfg(max_steps=6, learning_rate=1e30, optimizer="adamw_torch", max_grad_norm=1e30,
                            save_steps=1, eval_steps=1), str(tiny_llama_dir), rows, rows[:1]), rep)
    assert s["stop_reason"] == "nan_loss" and s["global_step"] < 6
    assert all(r["eval_loss"] == r["eval_loss"] and r["eval_loss"] < 1e30 for r in rep.reports)
