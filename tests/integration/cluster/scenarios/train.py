"""Ray Train on a 3-node cluster: a 2-worker QLoRA run across nodes, then the same run with a worker SIGKILLed.

Each worker node has one CPU and each worker reserves one, so the two workers must sit
on different nodes. Part ``distributed`` is the unbroken reference run; part ``fault``
repeats it under another run name and kills one worker's process once the controller
has registered the first checkpoint. Ray Train (``train.max_failures``) restarts the worker group from
the latest checkpoint; the final losses are compared with the reference.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tests.integration.cluster.scenarios.common import actors, kill_pid, main, node_names, part, wait_for

WORKER = "RayTrainWorker"
STEPS = 10
SETS = ["train.max_seq_length=128", "train.batch_size=1", "train.grad_accum=1", "train.warmup_ratio=0.0",
        "train.lora.r=8", "train.lora.alpha=16", "train.lora.dropout=0.0", "train.log_steps=1",
        "train.eval_prompts=[What is 1 plus 1]", "train.eval_max_tokens=2", "train.keep_best=2",
        "train.early_stopping.patience=null", "train.early_stopping.overfit_gap=null",
        f"train.max_steps={STEPS}", "train.learning_rate=0.01", "train.eval_steps=2", "train.save_steps=2",
        "train.val_fraction=0.25", "train.num_workers=2", "train.cpus_per_worker=1", "train.max_failures=1",
        "student.backend=transformers", "run.seed=7"]


def config(work: Path, model: str, name: str):
    from cogumi.config import load_config
    from tests.unit.train.helpers import sum_rows, write_parquet

    write_parquet(work / "runs" / name / "curate" / "curated.parquet", sum_rows(12))
    return load_config(None, [*SETS, f"run.root={work / 'runs'}", f"run.name={name}", f"student.model={model}"])


def train(work: Path, model: str, name: str) -> dict[str, Any]:
    from cogumi.train.stage import run_train

    out = run_train(config(work, model, name))
    stage = work / "runs" / name / "train"
    history = json.loads((stage / "log_history.json").read_text())
    m = out["metrics"]
    return {"global_step": m["global_step"], "resumed_from_step": m["resumed_from_step"],
            "last_train_loss": m["last_train_loss"], "best_eval_loss": m["best_eval_loss"],
            "losses": [[h["step"], h["loss"]] for h in history if "loss" in h],
            "eval_losses": [[h["step"], h["eval_loss"]] for h in history if "eval_loss" in h],
            "workers_method": out["method"]["workers"], "adapter": (stage / "adapter" / "adapter_model.safetensors").is_file()}


def workers(before: set[str]) -> list[dict[str, Any]]:
    names = node_names()
    return [{"actor_id": a.actor_id, "node": names.get(a.node_id, a.node_id), "state": a.state, "pid": a.pid}
            for a in actors(WORKER) if a.actor_id not in before]


def distributed(work: Path, model: str) -> dict[str, Any]:
    before = {a.actor_id for a in actors(WORKER)}
    return train(work, model, "reference") | {"workers": workers(before)}


def registered_checkpoint(work: Path, name: str) -> str | None:
    """The latest checkpoint Ray Train's controller has registered (its snapshot file), if any."""
    for snap in (work / "runs" / name / "train" / "ray").glob("run-*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snap.read_text()).get("latest_checkpoint_result")
        except (OSError, ValueError):  # being written
            continue
        if latest:
            return latest["checkpoint_dir_name"]
    return None


def fault(work: Path, model: str) -> dict[str, Any]:
    before = {a.actor_id for a in actors(WORKER)}
    killed: dict[str, Any] = {}

    def killer() -> None:
        if not wait_for(lambda: registered_checkpoint(work, "killed"), 400, every_s=0.1):
            return
        alive = [a for a in actors(WORKER) if a.actor_id not in before and a.state == "ALIVE"]
        if not alive:
            return
        victim = alive[-1]
        killed.update({"actor_id": victim.actor_id, "pid": victim.pid, "node": node_names().get(victim.node_id),
                       "registered_at_kill": registered_checkpoint(work, "killed")})
        kill_pid(victim.pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    out = train(work, model, "killed")
    thread.join(timeout=5)
    return out | {"killed": killed, "workers": workers(before)}


def run(args, result: dict[str, Any]) -> None:
    work = Path(args.work)
    part(result, "distributed", lambda: distributed(work, args.model))
    part(result, "fault", lambda: fault(work, args.model))


if __name__ == "__main__":
    main(run)
