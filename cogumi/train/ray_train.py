"""Thin Ray Train (V2) adapter: one :func:`~cogumi.train.sft.run_sft` per worker under a ``TorchTrainer``.

Checkpoints go to ``RunConfig(storage_path, name)``; Ray keeps the best ``keep_best``
by validation loss (and always the latest). Re-running with the same storage path
and name restores Ray's checkpoint manager, so ``ray.train.get_checkpoint()`` hands
the worker the latest checkpoint and training continues from its step. A worker
that fails is restarted from that checkpoint up to ``max_failures`` times.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Any

from cogumi.errors import CogumiError
from cogumi.train.config import TrainConfig
from cogumi.train.sft import SFTJob, run_sft

SCORE = "eval_loss"
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


class RayReporter:
    """Reporter over ``ray.train.report`` / ``ray.train.get_checkpoint``."""

    def __init__(self, rank: int):
        self.rank = rank
        self._restored: str | None = None

    def restore(self) -> str | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        self._restored = tempfile.mkdtemp(prefix="cogumi-restore-")
        ckpt.to_directory(self._restored)
        return self._restored

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        import ray.train
        from ray.train import Checkpoint

        ckpt = Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        name = f"checkpoint-{int(metrics['step']):07d}"
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name)


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """What each Ray Train worker runs: place the model on this rank's device, train, report.

    The returned summary becomes ``Result.return_value`` (Train V2): step counts, method, timings.
    """
    import ray
    import ray.train
    import ray.train.torch

    job = config["job"]
    if isinstance(job, ray.ObjectRef):
        job = ray.get(job)
    if config.get("overrides"):
        job = with_overrides(job, config["overrides"])
    ctx = ray.train.get_context()
    device = ray.train.torch.get_device()
    device_str = "cpu" if device.type == "cpu" else f"{device.type}:{device.index or 0}"
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    reporter = RayReporter(rank=ctx.get_world_rank())
    if config.get("pg_marker") and ctx.get_world_rank() == 0:
        _write_placement_group_id(*config["pg_marker"])
    try:
        summary = run_sft(job, reporter, device=device_str)
    finally:
        if reporter._restored:
            shutil.rmtree(reporter._restored, ignore_errors=True)
    summary["world_size"] = ctx.get_world_size()
    return summary


def _write_placement_group_id(fs: Any, path: str) -> None:
    from ray.util import get_current_placement_group

    pg = get_current_placement_group()
    if pg is not None:
        with fs.open_output_stream(path) as f:
            f.write(pg.id.hex().encode())


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``cfg`` with dotted keys replaced (a Tune trial's sample), re-validated."""
    data = cfg.model_dump()
    for key, value in overrides.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return TrainConfig.model_validate(data)


def with_overrides(job: SFTJob, overrides: dict[str, Any]) -> SFTJob:
    """The job with its training config overridden (see :func:`apply_overrides`)."""
    return dataclasses.replace(job, cfg=apply_overrides(job.cfg, overrides))


def check_cluster(cfg: TrainConfig) -> dict[str, float]:
    """Fail before launching when the cluster cannot hold the requested workers.

    Raises:
        CogumiError: GPUs requested on a cluster without enough of them, or too few CPUs.
    """
    import ray

    res = ray.cluster_resources()
    need_cpu = cfg.num_workers * cfg.cpus_per_worker
    if cfg.use_gpu:
        need_gpu = cfg.num_workers * cfg.gpus_per_worker
        if res.get("GPU", 0) < need_gpu:
            raise CogumiError(f"train.use_gpu asks for {need_gpu:g} GPU(s) ({cfg.num_workers} worker(s) × "
                              f"{cfg.gpus_per_worker:g}) but this Ray cluster has {res.get('GPU', 0):g}",
                              "train.use_gpu / train.num_workers",
                              "set train.use_gpu=false to train on CPU, or connect to a GPU cluster (RAY_ADDRESS)")
    if res.get("CPU", 0) < need_cpu:
        raise CogumiError(f"train needs {need_cpu:g} CPU(s) for {cfg.num_workers} worker(s) but the Ray cluster "
                          f"has {res.get('CPU', 0):g}", "train.num_workers / train.cpus_per_worker",
                          "lower train.num_workers or train.cpus_per_worker")
    return res


def build_trainer(cfg: TrainConfig, job: SFTJob | Any, *, storage_path: str, storage_fs: Any, name: str,
                  callbacks: list[Any] | None = None, overrides: dict[str, Any] | None = None,
                  pg_marker: tuple[Any, str] | None = None, scored: bool = True) -> Any:
    """The ``TorchTrainer`` for one training run.

    Args:
        cfg: training section (scaling, failures, checkpoints).
        job: the worker's job, or an ``ObjectRef`` to it.
        storage_path: folder of the run's Ray storage (inside the run directory).
        storage_fs: its pyarrow filesystem.
        name: Ray run name; the same name resumes.
        callbacks: Ray Train user callbacks (Tune's report callback).
        overrides: dotted training keys to replace inside the workers (a Tune trial's sample).
        pg_marker: (filesystem, path) where rank 0 writes its placement group id (Tune cleanup).
        scored: keep the best checkpoints by validation loss (False without validation data: the latest).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = cfg.gpus_per_worker
    # read by the Train controller, which takes these variables from the process that calls fit()
    os.environ[START_TIMEOUT_ENV] = str(cfg.worker_start_timeout_s)
    return TorchTrainer(
        # Ray annotates the loop as returning None, but Train V2 hands its return value to
        # Result.return_value, which write_outputs reads (global_step, method, timings): keep it
        train_loop_per_worker,  # type: ignore[arg-type]
        train_loop_config={"job": job, "overrides": overrides or {}, "pg_marker": pg_marker},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker=resources),
        # Train V2's RunConfig/FailureConfig at run time; ray's annotations name the V1 classes
        run_config=RunConfig(  # type: ignore[call-arg]
            name=name, storage_path=storage_path, storage_filesystem=storage_fs,
            # controller errors (e.g. workers that never start) are retried a few times, not forever
            failure_config=FailureConfig(max_failures=cfg.max_failures,  # type: ignore[call-arg]
                                         controller_failure_limit=3),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_best,
                                               checkpoint_score_attribute=SCORE if scored else None,
                                               checkpoint_score_order="min"),
            callbacks=callbacks or None,
            # Train V2 tees every print into the root logger; that doubles HF's log lines and leaks the
            # bytecode dumps `dill` prints into a captured stdout while `datasets` fingerprints functions
            worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}),
    )


def fit(trainer: Any) -> Any:
    """Run the trainer; a failed run becomes a CogumiError that says the checkpoints are kept."""
    from ray.train import TrainingFailedError

    try:
        return trainer.fit()
    except TrainingFailedError as exc:
        cause = str(exc).strip().splitlines()
        raise CogumiError(f"training failed after all allowed restarts ({cause[-1][:300] if cause else exc})",
                          "train (Ray Train workers)",
                          "finished checkpoints are kept; fix the cause and re-run with the same run.name "
                          "to resume from the latest one") from None
