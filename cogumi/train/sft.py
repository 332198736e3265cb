"""The training core (no Ray): TRL ``SFTTrainer`` over prompt–completion pairs with LoRA.

:func:`run_sft` is what every Ray worker runs, and what unit tests call directly. It
talks to its surroundings through a :class:`Reporter`: ``restore()`` gives the
checkpoint to resume from, ``report()`` hands over each finished checkpoint with
its validation metrics. :class:`LocalReporter` keeps them in a folder.

Each checkpoint folder holds the HF checkpoint (adapter, optimizer, scheduler,
trainer state), ``probe.json`` (validation loss, perplexity and generations for
the fixed prompts at every checkpoint so far) and ``tensorboard/``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from transformers import TrainerCallback

from cogumi.train.callbacks import EarlyStopping, FailOnce, GradientMonitor, LossGuard, StopReason
from cogumi.train.config import TrainConfig
from cogumi.train.data import to_prompt_completion
from cogumi.train.deepspeed import deepspeed_config
from cogumi.train.model import (
    attach_lora,
    attention_impl,
    choose_optimizer,
    compute_dtype,
    load_base,
    load_training_tokenizer,
)

PROBE_FILE = "probe.json"
TB_DIR = "tensorboard"


class Reporter(Protocol):
    """Where checkpoints go and where a resumed run finds its last one."""

    rank: int

    def restore(self) -> str | None:
        """Local folder of the checkpoint to resume from, or None."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        """Persist one checkpoint (rank 0 passes the folder, other ranks None)."""


class LocalReporter:
    """A reporter that copies checkpoints into ``root/checkpoint-<step>`` (single process, no Ray)."""

    rank = 0

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.reports: list[dict[str, Any]] = []

    def restore(self) -> str | None:
        ckpts = sorted(self.root.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        return str(ckpts[-1]) if ckpts else None

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir:
            shutil.copytree(checkpoint_dir, self.root / f"checkpoint-{metrics['step']}", dirs_exist_ok=True)


@dataclass
class SFTJob:
    """Everything one worker needs (picklable)."""

    cfg: TrainConfig
    model_location: str
    train_rows: list[dict[str, Any]]
    val_rows: list[dict[str, Any]]
    seed: int = 0
    init_adapter: str | None = None
    fault_marker: tuple[Any, str] | None = None  # (pyarrow filesystem, path) for fail_once_at_step
    callbacks: list[Any] = field(default_factory=list)  # extra TrainerCallbacks (benchmarks)


def run_sft(job: SFTJob, reporter: Reporter, device: str = "cpu") -> dict[str, Any]:
    """Train one LoRA adapter; resume from ``reporter.restore()`` when it has a checkpoint.

    Args:
        job: config, model and examples.
        reporter: checkpoint sink/source.
        device: this rank's device (``cpu``, ``cuda:0`` ...).

    Returns:
        Summary for the manifest: stop reason, steps, resumed-from step, what ran.
    """
    import torch
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from trl import SFTConfig, SFTTrainer

    cfg = job.cfg
    disable_progress_bar()
    torch.manual_seed(job.seed)
    tokenizer = load_training_tokenizer(job.model_location)
    dtype = compute_dtype(cfg, device)
    optim, optim_note = choose_optimizer(cfg, device)
    attn, packing_note = attention_impl(device)
    model = attach_lora(load_base(job.model_location, qlora=cfg.qlora, device=device, dtype=dtype),
                        cfg, job.init_adapter)

    out_dir = tempfile.mkdtemp(prefix="cogumi-sft-")
    has_val = bool(job.val_rows)
    args = SFTConfig(
        output_dir=out_dir, seed=job.seed, data_seed=job.seed,
        max_steps=cfg.max_steps or -1, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, optim=optim,
        bf16=dtype == torch.bfloat16 and not cfg.qlora, use_cpu=device == "cpu",
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=cfg.log_steps, logging_first_step=True, logging_nan_inf_filter=False,
        eval_strategy="steps" if has_val else "no", eval_steps=cfg.eval_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2,
        report_to=["tensorboard"], disable_tqdm=True, dataloader_num_workers=0,
        max_length=cfg.max_seq_length, packing=cfg.packing, packing_strategy="bfd",
        completion_only_loss=True, ddp_find_unused_parameters=False,
        deepspeed=deepspeed_config(cfg),
    )
    stop = StopReason()
    early = EarlyStopping(cfg.early_stopping, stop)
    probe = Probe(cfg, tokenizer, reporter, early, stop)
    grads = GradientMonitor(cfg.max_grad_norm, stop)
    callbacks: list[TrainerCallback] = [LossGuard(cfg.explosion, stop), early, grads, probe]
    if cfg.fail_once_at_step and job.fault_marker:
        callbacks.append(FailOnce(cfg.fail_once_at_step, *job.fault_marker))
    callbacks.extend(job.callbacks)
    trainer = SFTTrainer(
        model=model, args=args, processing_class=tokenizer, callbacks=callbacks,
        train_dataset=Dataset.from_list([to_prompt_completion(r) for r in job.train_rows]),
        eval_dataset=Dataset.from_list([to_prompt_completion(r) for r in job.val_rows]) if has_val else None)
    probe.trainer = trainer

    resume = reporter.restore()
    resumed_from = 0
    if resume:
        resumed_from = probe.restore(resume, out_dir)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=resume)
    elapsed = time.time() - t0
    state = trainer.state
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "stop_reason": stop.reason, "stop_detail": stop.detail, "events": stop.events,
        "global_step": state.global_step, "resumed_from_step": resumed_from, "max_steps": state.max_steps,
        "train_tokens": int(getattr(trainer, "_total_train_tokens", 0)), "train_seconds": round(elapsed, 2),
        "trainable_params": int(trainable), "grad_clip_fraction": grads.fraction,
        "method": {"optimizer": optim_note, "attention": attn, "packing": packing_note if cfg.packing else
                   "off (padded batches)", "precision": str(dtype).replace("torch.", ""),
                   "base": "nf4 + double quant (bitsandbytes)" if cfg.qlora else f"{dtype} (no quantisation)",
                   "fp32_parts": "norms, embeddings, lm_head (k-bit training prep; no autocast)" if cfg.qlora
                   else "none",
                   "device": device, "deepspeed": cfg.deepspeed},
        "peak_memory_gb": _peak_memory_gb(device),
    }


class Probe(TrainerCallback):
    """At each checkpoint: validation metrics, generations for the fixed prompts, then report it."""

    def __init__(self, cfg: TrainConfig, tokenizer: Any, reporter: Reporter, early: EarlyStopping, stop: StopReason):
        self.cfg, self.tokenizer, self.reporter, self.early, self.stop = cfg, tokenizer, reporter, early, stop
        self.history: list[dict[str, Any]] = []
        self.trainer: Any = None

    def restore(self, ckpt: str, out_dir: str) -> int:
        """Load history and counters from a checkpoint; return its step."""
        data = json.loads((Path(ckpt) / PROBE_FILE).read_text()) if (Path(ckpt) / PROBE_FILE).is_file() else {}
        self.history = data.get("history", [])
        self.early.load_state_dict(data.get("early_stopping", {}))
        self.stop.events = data.get("events", [])
        tb = Path(ckpt) / TB_DIR
        if tb.is_dir():
            shutil.copytree(tb, Path(out_dir) / "runs" / "restored", dirs_exist_ok=True)
        state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
        return int(state["global_step"])

    def on_save(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        evals = [h for h in state.log_history if "eval_loss" in h]
        last_eval = evals[-1] if evals else {}
        losses = [h["loss"] for h in state.log_history if "loss" in h]
        val = last_eval.get("eval_loss")
        if val is not None and not math.isfinite(val):
            return control  # never persist a diverged checkpoint
        row = {"step": step, "epoch": round(state.epoch or 0.0, 4),
               "eval_loss": val, "perplexity": _ppl(val), "eval_step": last_eval.get("step"),
               "train_loss": losses[-1] if losses else None, "learning_rate": _last(state.log_history, "learning_rate")}
        ckpt_dir = os.path.join(args.output_dir, f"checkpoint-{step}")
        if self.reporter.rank == 0:
            row["generations"] = self._generate(model)
            self.history.append(row)
            self._write_probe(ckpt_dir)
        metrics = {k: v for k, v in row.items() if k != "generations" and v is not None}
        self.reporter.report(metrics, ckpt_dir if self.reporter.rank == 0 else None)
        return control

    def _write_probe(self, ckpt_dir: str) -> None:
        Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
        data = {"history": self.history, "early_stopping": self.early.state_dict(), "events": self.stop.events}
        (Path(ckpt_dir) / PROBE_FILE).write_text(json.dumps(data, indent=2))
        if self.trainer is None:
            return
        for cb in self.trainer.callback_handler.callbacks:
            if getattr(cb, "tb_writer", None) is not None:
                cb.tb_writer.flush()
        runs = Path(self.trainer.args.output_dir) / "runs"
        if runs.is_dir():
            shutil.copytree(runs, Path(ckpt_dir) / TB_DIR, dirs_exist_ok=True)

    def _generate(self, model: Any) -> list[dict[str, str]]:
        import torch

        if model is None or not self.cfg.eval_prompts:
            return []
        was_training = model.training
        model.eval()
        out = []
        try:
            for prompt in self.cfg.eval_prompts:
                ids = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                         add_generation_prompt=True, return_tensors="pt",
                                                         return_dict=True)
                ids = {k: v.to(model.device) for k, v in ids.items()}
                with torch.no_grad():
                    gen = model.generate(**ids, max_new_tokens=self.cfg.eval_max_tokens, do_sample=False,
                                         use_cache=True, pad_token_id=self.tokenizer.pad_token_id)
                text = self.tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
                out.append({"prompt": prompt, "response": text})
        finally:
            if was_training:
                model.train()
        return out


def _ppl(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(min(loss, 50.0))


def _last(history: list[dict[str, Any]], key: str) -> Any:
    for entry in reversed(history):
        if key in entry:
            return entry[key]
    return None


def _peak_memory_gb(device: str) -> float | None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)
    except (ImportError, OSError):
        return None
