"""One LoRA adapter per domain, trained through ``cogumi.train``'s Ray Train path, exported as GGUF LoRA."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cogumi.errors import CogumiError
from cogumi.train.config import TrainConfig

log = logging.getLogger(__name__)


def domain_train_config(train: TrainConfig, rank: int, alpha: int | None, max_steps: int | None) -> TrainConfig:
    """``train`` with this domain's LoRA rank (and alpha, step count); checkpoints every run end.

    Args:
        train: the run's training section (precision, QLoRA, batch size ... are kept).
        rank: the domain's LoRA rank.
        alpha: LoRA alpha (None keeps ``train.lora.alpha``).
        max_steps: steps (None keeps ``train.max_steps``).
    """
    data = train.model_dump()
    data["lora"]["r"] = rank
    if alpha is not None:
        data["lora"]["alpha"] = alpha
    if max_steps is not None:
        data["max_steps"] = max_steps
    steps = data["max_steps"]
    if steps:
        data["eval_steps"] = min(data["eval_steps"], steps)
        data["save_steps"] = data["eval_steps"] * max(1, steps // data["eval_steps"])
    data["merge"], data["init_adapter"], data["fail_once_at_step"] = False, None, None
    return TrainConfig.model_validate(data)


def train_adapter(tc: TrainConfig, model_location: str, examples: list[dict[str, str]], out_dir: str,
                  storage_path: str, storage_fs: Any, name: str, seed: int = 0) -> dict[str, Any]:
    """Train one adapter on ``{instruction, response}`` examples with Ray Train and copy it to ``out_dir``.

    Args:
        tc: training config (rank already set, see :func:`domain_train_config`).
        model_location: local HF folder of the base.
        examples: the training examples (also the validation set: there are few).
        out_dir: local folder that receives the PEFT adapter files of the best checkpoint.
        storage_path, storage_fs: Ray Train storage (inside the stage folder).
        name: Ray run name.
        seed: training seed.

    Returns:
        The worker's summary (steps, stop reason, method).

    Raises:
        CogumiError: no examples, the cluster cannot hold the worker, or training produced no checkpoint.
    """
    import ray

    from cogumi.train import outputs
    from cogumi.train.ray_train import build_trainer, check_cluster, fit
    from cogumi.train.sft import SFTJob

    if not examples:
        raise CogumiError("no training examples for the adapter", name, "the cascade must keep some answers")
    check_cluster(tc)
    job = SFTJob(cfg=tc, model_location=model_location, train_rows=examples, val_rows=examples[:4], seed=seed)
    result = fit(build_trainer(tc, ray.put(job), storage_path=storage_path, storage_fs=storage_fs, name=name))
    kept = [(c, m) for c, m in (result.best_checkpoints or []) if m.get("eval_loss") is not None]
    best = min(kept, key=lambda cm: cm[1]["eval_loss"])[0] if kept else result.checkpoint
    if best is None:
        raise CogumiError("adapter training finished without a checkpoint", name,
                          "raise modifiers.adapter.max_steps or lower train.eval_steps")
    with tempfile.TemporaryDirectory(prefix="cogumi-mod-") as tmp:
        best.to_directory(tmp)
        files = outputs.adapter_files(tmp)
        if not files:
            raise CogumiError("the adapter checkpoint holds no adapter files", name, "check the training logs")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, Path(out_dir) / f.name)
    summary = dict(result.return_value or {})
    log.info("%s: adapter r=%d trained, %s steps", name, tc.lora.r, summary.get("global_step"))
    return summary


def export_gguf(adapter_dir: str, base_dir: str, out_path: str) -> dict[str, Any]:
    """Export the PEFT adapter as a GGUF LoRA (compression's exporter) for llama.cpp serving."""
    from cogumi.compress.lora_gguf import export_lora_gguf

    exp = export_lora_gguf(adapter_dir, base_dir, out_path)
    return {"path": str(exp.path), "rank": exp.rank, "alpha": exp.alpha, "pairs": exp.n_pairs}
