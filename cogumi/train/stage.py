"""The training stage: check inputs, run Ray Train, write outputs and the manifest.

Layout of ``<run>/<train.stage>/``::

    manifest.json        config hash, inputs, metrics, what really ran
    adapter/             PEFT adapter of the best checkpoint (validation loss)
    merged/              base + adapter in bf16 safetensors (train.merge)
    checkpoints.csv      validation loss and perplexity per checkpoint
    generations.jsonl    answers to the fixed prompts at every checkpoint
    loss_curve.png       training and validation loss
    log_history.json     every logged value
    tensorboard/         TensorBoard event files
    ray/<key>/           Ray Train storage: the kept checkpoints (best K + latest)

The Ray run name ``<key>`` is derived from the training config and inputs: the
same config resumes from its latest checkpoint, a changed one starts fresh in a
new folder and never touches finished checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from cogumi.artifacts import RunDir, StageRecorder, digest_tree
from cogumi.config import CogumiConfig
from cogumi.errors import CogumiError
from cogumi.raycluster import connect
from cogumi.train import outputs
from cogumi.train.data import Location, check_lengths, read_examples, resolve_ref, split_examples
from cogumi.train.deepspeed import check_deepspeed_available
from cogumi.train.sft import SFTJob

log = logging.getLogger(__name__)
#: train keys that do not change what is trained (so a re-run with them changed still resumes)
RESUME_NEUTRAL = {"fail_once_at_step", "max_failures", "merge", "tune", "eval_prompts", "eval_max_tokens",
                  "num_workers", "cpus_per_worker", "gpus_per_worker", "worker_start_timeout_s"}


def location_digest(loc: Location) -> str:
    """Digest of an input file or folder on its filesystem."""
    tree = digest_tree(loc.fs, loc.path)
    if not tree:
        raise CogumiError(f"input '{loc.ref}' does not exist or is empty", loc.ref, "check the path")
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def local_copy(loc: Location) -> tuple[str, bool]:
    """A local folder with the contents of ``loc`` (copied when it lives on a remote filesystem).

    Returns:
        (path, is_temporary)
    """
    if isinstance(loc.fs, pafs.LocalFileSystem):
        return loc.path, False
    tmp = tempfile.mkdtemp(prefix="cogumi-in-")
    pafs.copy_files(loc.path, tmp, source_filesystem=loc.fs, destination_filesystem=pafs.LocalFileSystem())
    return tmp, True


def prepare(cfg: CogumiConfig, run: RunDir) -> dict[str, Any]:
    """Resolve and check the stage's inputs before any worker starts.

    Returns:
        ``inputs`` (digests), ``rows``, ``val_rows``, ``init_adapter`` location, ``model_location``, ``stats``.

    Raises:
        CogumiError: missing/empty/malformed data, a sequence length below the chat template,
            a missing adapter, DeepSpeed misconfiguration.
    """
    from cogumi.models.loading import hf_checkpoint, load_tokenizer

    tc = cfg.train
    check_deepspeed_available(tc)
    seed = cfg.run.seed if tc.seed is None else tc.seed
    data = resolve_ref(tc.data, run)
    rows = read_examples(data, "train.data")
    inputs = {"data": location_digest(data)}
    if tc.val_data:
        val = resolve_ref(tc.val_data, run)
        train_rows, val_rows = rows, read_examples(val, "train.val_data")
        inputs["val_data"] = location_digest(val)
    else:
        train_rows, val_rows = split_examples(rows, tc.val_fraction, seed)
    adapter = None
    if tc.init_adapter:
        adapter = resolve_ref(tc.init_adapter, run)
        if adapter.fs.get_file_info(posixpath.join(adapter.path, "adapter_config.json")).type != pafs.FileType.File:
            raise CogumiError(f"train.init_adapter '{tc.init_adapter}' is not a PEFT adapter folder "
                              f"(no adapter_config.json in {adapter.path})", "train.init_adapter",
                              "run Phase 1A first (`cogumi train`) or point it at an adapter/ folder")
        inputs["init_adapter"] = location_digest(adapter)
    model_location = hf_checkpoint(cfg.student)
    inputs["student"] = cfg.student.model
    stats = check_lengths(load_tokenizer(model_location), train_rows, tc.max_seq_length)
    return {"inputs": inputs, "rows": train_rows, "val_rows": val_rows, "adapter": adapter,
            "model_location": model_location, "stats": stats, "seed": seed}


def resume_key(cfg: CogumiConfig, inputs: dict[str, str]) -> str:
    """Ray run name: equal for runs that train the same thing, so they resume each other."""
    train = {k: v for k, v in cfg.train.model_dump(mode="json").items() if k not in RESUME_NEUTRAL}
    blob = json.dumps({"train": train, "student": cfg.student.model, "seed": cfg.run.seed, "inputs": inputs},
                      sort_keys=True)
    return "run-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_train(cfg: CogumiConfig, force: bool = False) -> dict[str, Any]:
    """Run the training stage of ``cfg`` (1A or, with ``train.stage: train-1b``, 1B).

    Args:
        cfg: the whole config (run, student, train).
        force: run even when the manifest says the stage is up to date.

    Returns:
        A summary: stage path, metrics, method, best checkpoint, skipped flag.
    """
    import ray

    tc = cfg.train
    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(tc.stage)
    prep = prepare(cfg, run)
    cfg_hash = cfg.section_hash("train", "student")
    if not force and stage.can_skip(cfg_hash, prep["inputs"]):
        m = stage.finished_manifest()
        return {"skipped": True, "stage": stage.path, "metrics": m.metrics, "method": m.method}
    connect()
    from cogumi.train.ray_train import build_trainer, check_cluster, fit

    check_cluster(tc)
    key = resume_key(cfg, prep["inputs"])
    with stage.begin(cfg_hash, prep["inputs"]) as rec:
        adapter_dir, tmp_adapter = local_copy(prep["adapter"]) if prep["adapter"] else (None, False)
        try:
            job = SFTJob(cfg=tc, model_location=prep["model_location"], train_rows=prep["rows"],
                         val_rows=prep["val_rows"], seed=prep["seed"], init_adapter=adapter_dir,
                         fault_marker=(run.fs, stage.file(f"ray/{key}.fault-injected")))
            trainer = build_trainer(tc, ray.put(job), storage_path=stage.file("ray"), storage_fs=run.fs, name=key,
                                    scored=bool(prep["val_rows"]))
            log.info("training %s: %d train / %d val examples, Ray run %s", tc.stage, len(prep["rows"]),
                     len(prep["val_rows"]), key)
            result = fit(trainer)
        finally:
            if tmp_adapter and adapter_dir:
                shutil.rmtree(adapter_dir, ignore_errors=True)
        summary = write_outputs(rec, cfg, prep, result, key)
        if summary["stop_reason"] in ("nan_loss", "loss_explosion"):
            restart = tc.learning_rate * tc.explosion.restart_factor
            raise CogumiError(f"training stopped: {summary['stop_detail']}", f"stage {tc.stage}",
                              f"finished checkpoints are kept in {stage.file('ray/' + key)}; restart with a lower "
                              f"learning rate, e.g. --set train.learning_rate={restart:.2g} (the spec's rule)")
    return summary | {"skipped": False, "stage": stage.path}


def write_outputs(rec: StageRecorder, cfg: CogumiConfig, prep: dict[str, Any], result: Any,
                  key: str) -> dict[str, Any]:
    """Write adapter, tables, curve, generations and TensorBoard logs; fill the manifest."""
    tc = cfg.train
    worker = result.return_value or {}
    kept = [(c, m) for c, m in (result.best_checkpoints or []) if m.get("eval_loss") is not None]
    scored = sorted(kept, key=lambda cm: cm[1]["eval_loss"])
    best_ckpt, best_metrics = scored[0] if scored else (result.checkpoint, result.metrics or {})
    if result.checkpoint is None:
        raise CogumiError("training finished without a single checkpoint", f"stage {tc.stage}",
                          "lower train.eval_steps/save_steps or raise train.max_steps")
    fs = rec.fs
    with tempfile.TemporaryDirectory(prefix="cogumi-out-") as tmp:
        latest = Path(tmp) / "latest"
        best = Path(tmp) / "best"
        result.checkpoint.to_directory(str(latest))
        best_ckpt.to_directory(str(best))
        probe = outputs.read_probe(latest)
        history, log_history = probe.get("history", []), outputs.read_log_history(latest)
        for f in outputs.adapter_files(best):
            _put(fs, f, rec.path(f"{outputs.ADAPTER}/{f.name}"))
        rec.write_text("checkpoints.csv", outputs.checkpoint_table(
            history, {int(m["step"]) for _, m in (result.best_checkpoints or [])}, best_metrics.get("step")))
        rec.write_text("generations.jsonl", outputs.generations_jsonl(history))
        rec.write_json("log_history.json", log_history)
        with fs.open_output_stream(rec.path("loss_curve.png")) as out:
            out.write(outputs.loss_curve_png(log_history, f"{cfg.run.name} / {tc.stage}"))
        tb = outputs.tensorboard_dir(latest)
        if tb is not None:
            pafs.copy_files(str(tb), rec.path("tensorboard"), source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=fs)
        method = {k: str(v) for k, v in (worker.get("method") or {}).items()}
        if tc.merge:
            method |= merge_on_ray(cfg, prep["model_location"], str(best), rec)
    losses = [h["loss"] for h in log_history if "loss" in h]
    method |= {"trainer": "trl.SFTTrainer on ray.train.torch.TorchTrainer (Train V2)",
               "lora": f"r={tc.lora.r} alpha={tc.lora.alpha} dropout={tc.lora.dropout} on "
                       f"{','.join(tc.lora.target_modules)}" if not tc.init_adapter else
                       f"continued from {tc.init_adapter}",
               "workers": f"{worker.get('world_size', tc.num_workers)} x {'GPU' if tc.use_gpu else 'CPU'}",
               "ray_run": key}
    rec.method.update(method)
    rec.metrics.update({
        "train_examples": len(prep["rows"]), "val_examples": len(prep["val_rows"]), **prep["stats"],
        "global_step": worker.get("global_step"), "resumed_from_step": worker.get("resumed_from_step"),
        "stop_reason": worker.get("stop_reason") or "completed", "stop_detail": worker.get("stop_detail"),
        "events": worker.get("events", []), "first_train_loss": losses[0] if losses else None,
        "last_train_loss": losses[-1] if losses else None, "best_eval_loss": best_metrics.get("eval_loss"),
        "best_perplexity": best_metrics.get("perplexity"), "best_step": best_metrics.get("step"),
        "checkpoints": len(history), "train_tokens": worker.get("train_tokens"),
        "train_seconds": worker.get("train_seconds"), "peak_memory_gb": worker.get("peak_memory_gb"),
        "trainable_params": worker.get("trainable_params"), "grad_clip_fraction": worker.get("grad_clip_fraction"),
        "tokens_per_s": round(worker["train_tokens"] / worker["train_seconds"], 1)
        if worker.get("train_seconds") else None,
    })
    return {"stop_reason": worker.get("stop_reason"), "stop_detail": worker.get("stop_detail"),
            "metrics": dict(rec.metrics), "method": dict(rec.method), "adapter": rec.stage.file(outputs.ADAPTER)}


def merge_on_ray(cfg: CogumiConfig, base: str, adapter_dir: str, rec: StageRecorder) -> dict[str, str]:
    """Dequantise + merge in a Ray task with a worker's resources; it writes ``merged/`` itself."""
    import ray

    tc = cfg.train
    files = {p.name: p.read_bytes() for p in outputs.adapter_files(adapter_dir)}
    dest = rec.stage.file(outputs.MERGED)
    task = ray.remote(num_cpus=tc.cpus_per_worker, num_gpus=tc.gpus_per_worker if tc.use_gpu else 0)(_merge_task)
    return ray.get(task.remote(base, files, rec.fs, dest, tc.qlora, "cuda" if tc.use_gpu else "cpu"))


def _merge_task(base: str, adapter: dict[str, bytes], fs: pafs.FileSystem, dest: str, qlora: bool,
                device: str) -> dict[str, str]:
    from cogumi.train.model import merge_adapter

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as out:
        for name, data in adapter.items():
            (Path(a) / name).write_bytes(data)
        method = merge_adapter(base, a, out, qlora=qlora, device=device)
        fs.create_dir(dest, recursive=True)
        pafs.copy_files(out, dest, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return method


def _put(fs: pafs.FileSystem, src: Path, dest: str) -> None:
    with open(src, "rb") as f, fs.open_output_stream(dest) as out:
        shutil.copyfileobj(f, out, 1 << 20)
