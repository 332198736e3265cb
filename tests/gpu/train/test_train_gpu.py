"""QLoRA on CUDA: paged 8-bit AdamW, bf16, packing on the GPU, and a GPU Ray Train worker."""

from __future__ import annotations

import json

import pytest
import torch

from cogumi.train.config import TrainConfig
from cogumi.train.sft import LocalReporter, SFTJob, run_sft

pytestmark = pytest.mark.gpu
ROWS = [{"instruction": f"What is {i} plus {i}?", "response": f"{i} plus {i} is {2 * i}."} for i in range(8)]
FAST = dict(max_seq_length=128, batch_size=2, grad_accum=1, log_steps=1, warmup_ratio=0.0,
            lora={"r": 8, "alpha": 16, "dropout": 0.0}, eval_prompts=["What is 1 plus 1?"], eval_max_tokens=4)


def test_qlora_on_cuda_runs_the_spec_configuration(cuda_tiny_llama, tmp_path):
    rep = LocalReporter(tmp_path / "ckpt")
    out = run_sft(SFTJob(TrainConfig(**FAST, max_steps=8, learning_rate=1e-2, eval_steps=4, save_steps=4),
                         str(cuda_tiny_llama), ROWS, ROWS[:2]), rep, device="cuda:0")
    m = out["method"]
    assert m["optimizer"] == "paged_adamw_8bit" and m["precision"] == "bfloat16" and m["base"].startswith("nf4")
    assert m["device"] == "cuda:0" and out["peak_memory_gb"] > 0
    log = json.loads((tmp_path / "ckpt" / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in log if "loss" in h]
    assert losses[-1] < losses[0]


def test_packed_and_unpacked_loss_agree_on_cuda(cuda_tiny_llama, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from cogumi.models.loading import load_tokenizer
    from cogumi.train.data import to_prompt_completion
    from cogumi.train.model import attach_lora, load_base

    losses = {}
    for packing in (True, False):
        torch.manual_seed(0)
        cfg = TrainConfig(lora={"r": 4, "alpha": 8, "dropout": 0.0}, gradient_checkpointing=False)
        model = attach_lora(load_base(str(cuda_tiny_llama), qlora=True, device="cuda:0", dtype=torch.bfloat16), cfg)
        ds = Dataset.from_list([to_prompt_completion(r) for r in ROWS])
        args = SFTConfig(output_dir=str(tmp_path / str(packing)), per_device_eval_batch_size=16, packing=packing,
                         eval_packing=packing, max_length=256, report_to=[], bf16=True, completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, eval_dataset=ds,
                             processing_class=load_tokenizer(str(cuda_tiny_llama)))
        losses[packing] = trainer.evaluate()["eval_loss"]
    assert abs(losses[True] - losses[False]) < 1e-2 * losses[False], losses  # bf16 compute


def test_ray_train_places_the_4bit_model_on_the_worker_gpu(cuda_tiny_llama, tmp_path):
    ray = pytest.importorskip("ray")
    from cogumi.config import load_config
    from cogumi.train.stage import run_train
    from tests.unit.train.helpers import sum_rows, write_parquet

    if not ray.is_initialized():
        ray.init(num_gpus=1, include_dashboard=False)
    write_parquet(tmp_path / "g" / "curate" / "curated.parquet", sum_rows(8))
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=g", f"student.model={cuda_tiny_llama}",
                             "student.backend=transformers", "train.use_gpu=true", "train.max_steps=4",
                             "train.eval_steps=2", "train.save_steps=2", "train.max_seq_length=128",
                             "train.batch_size=2", "train.grad_accum=1", "train.lora.r=8", "train.val_fraction=0.25",
                             "train.eval_max_tokens=4", "train.merge=true", "train.learning_rate=0.01"])
    out = run_train(cfg)
    m = json.loads((tmp_path / "g" / "train" / "manifest.json").read_text())
    assert m["status"] == "finished" and m["method"]["device"].startswith("cuda")
    assert m["method"]["optimizer"] == "paged_adamw_8bit" and m["method"]["workers"] == "1 x GPU"
    assert (tmp_path / "g" / "train" / "merged" / "model.safetensors").is_file()
    assert out["metrics"]["global_step"] == 4
