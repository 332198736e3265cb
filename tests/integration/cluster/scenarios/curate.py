"""Curation (Phase 0) on a 3-node cluster: spread over nodes, then a teacher worker SIGKILLed mid-run.

The teacher and judge are a real local OpenAI-compatible server (the embedded SmolLM2
behind uvicorn, started in this driver). Part ``spread``: two teacher actors (0.5 CPU each),
a filter (0.25) and a judge actor (0.5) need more CPUs than one worker node holds, and Ray
Data's default SPREAD strategy places them over both. Part ``fault`` (judge off, for time):
once the teacher is answering, the process of a teacher actor that is running a batch is
killed; Ray Data restarts the actor (``curate.ray.actor_max_restarts``) and retries the batch.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tests.integration.cluster.scenarios.common import actors, kill_pid, main, node_names, part, wait_for

PROMPTS = [
    ("What is 2 + 3?", "math"), ("Name a primary colour.", "conversation"), ("What is 7 times 6?", "math"),
    ("Write a haiku about rain.", "creative"), ("What does a CPU do?", "science"),
    ("Write a Python function that doubles a number.", "code"), ("Why do leaves change colour?", "science"),
    ("If all cats are animals, is a cat an animal?", "reasoning"),
]
MAP_WORKER = "MapWorker("  # Ray Data names its actors MapWorker(MapBatches(<UDF>))


def write_inputs(work: Path, server, name: str, judge: bool) -> Path:
    from tests.integration.curate.conftest import write_config, write_prompts

    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    prompts = write_prompts(folder / "prompts.jsonl",
                            [{"instruction": p, "domain": d, "difficulty": "easy"} for p, d in PROMPTS])
    return write_config(folder, server, prompts, run={"name": name},
                        curate={"max_new_tokens": 8, "cache": str(folder / "cache"),
                                "judge": {"enabled": judge, "max_tokens": 16, "parse_attempts": 1},
                                "ray": {"batch_size": 2, "teacher_workers": 2, "judge_workers": 1}})


def curate(config: Path) -> dict[str, Any]:
    """``cogumi curate --config ... --json`` in this driver (which is connected to the cluster)."""
    from typer.testing import CliRunner

    from cogumi.cli import app

    res = CliRunner().invoke(app, ["curate", "--config", str(config), "--json"], catch_exceptions=False)
    if res.exit_code != 0:
        raise RuntimeError(f"cogumi curate exited {res.exit_code}: {res.output[-3000:]}")
    return {"exit_code": res.exit_code}


def accounting(config: Path, name: str) -> dict[str, Any]:
    import json

    stage = config.parent / "runs" / name / "curate"
    rows = pq.read_table(stage / "rows.parquet").to_pylist()
    stats = json.loads((stage / "stats.json").read_text())
    return {"input_prompts": len(PROMPTS), "row_ids": [r["id"] for r in rows],
            "row_lines": sorted(int(r["location"].rsplit(":", 1)[1]) for r in rows),
            "statuses": [r["status"] for r in rows], "reasons": [r["reason"] for r in rows if r["status"] == "error"],
            "curated_rows": pq.read_metadata(stage / "curated.parquet").num_rows,
            "stats_rows": stats["rows"], "stats_accounted": stats["accounted"],
            "manifest_status": json.loads((stage / "manifest.json").read_text())["status"]}


def new_workers(before: set[str]) -> list[dict[str, Any]]:
    names = node_names()
    return [{"actor_id": a.actor_id, "class": a.class_name, "node": names.get(a.node_id, a.node_id),
             "state": a.state, "restarts": a.num_restarts, "pid": a.pid}
            for a in actors(MAP_WORKER) if a.actor_id not in before and a.node_id]  # node_id: was placed


def finished_task_nodes(before_s: float) -> dict[str, list[str]]:
    """Node name -> names of the map/actor tasks that finished there since ``before_s``."""
    from ray.util.state import list_tasks

    names, out = node_names(), {}
    for t in list_tasks(filters=[("state", "=", "FINISHED")], detail=True, limit=10_000,
                        raise_on_missing_output=False):
        if (t.end_time_ms or 0) / 1000 >= before_s and t.node_id:
            out.setdefault(names.get(t.node_id, t.node_id), []).append(t.func_or_class_name)
    return {k: sorted(set(v)) for k, v in out.items()}


def spread(work: Path, server) -> dict[str, Any]:
    config = write_inputs(work, server, "spread", judge=True)
    before, t0 = {a.actor_id for a in actors(MAP_WORKER)}, time.time()
    out = curate(config)
    return out | accounting(config, "spread") | {"map_workers": new_workers(before),
                                                 "finished_tasks_by_node": finished_task_nodes(t0),
                                                 "teacher_requests": len(server.requests)}


def busy_teacher(before: set[str]) -> Any:
    """An alive teacher actor of this run that is running a batch now."""
    from ray.util.state import list_tasks

    for a in actors(MAP_WORKER):
        if a.actor_id in before or a.state != "ALIVE" or "TeacherUDF" not in a.class_name:
            continue
        running = list_tasks(filters=[("actor_id", "=", a.actor_id), ("state", "=", "RUNNING")],
                             raise_on_missing_output=False)
        if running:
            return a
    return None


def fault(work: Path, server) -> dict[str, Any]:
    config = write_inputs(work, server, "fault", judge=False)
    server.requests.clear()
    before = {a.actor_id for a in actors(MAP_WORKER)}
    killed: dict[str, Any] = {}

    def killer() -> None:
        if not wait_for(lambda: len(server.requests) >= 1, 120):
            return
        victim = wait_for(lambda: busy_teacher(before), 60, every_s=0.1)
        if victim is None:
            return
        killed.update({"actor_id": victim.actor_id, "pid": victim.pid, "node": node_names().get(victim.node_id),
                       "requests_before_kill": len(server.requests)})
        kill_pid(victim.pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    out = curate(config)
    thread.join(timeout=5)
    workers = new_workers(before)
    victim = next((w for w in workers if w["actor_id"] == killed.get("actor_id")), None)
    return out | accounting(config, "fault") | {"killed": killed, "victim_after": victim, "map_workers": workers,
                                                "teacher_requests": len(server.requests)}


def run(args, result: dict[str, Any]) -> None:
    from cogumi.config import ModelConfig
    from cogumi.models.inference import make_backend
    from tests.support.openai_server import LocalOpenAIServer

    work = Path(args.work)
    backend = make_backend(ModelConfig(backend="llamacpp", n_ctx=2048))
    server = LocalOpenAIServer(backend).start()
    try:
        part(result, "spread", lambda: spread(work, server))
        part(result, "fault", lambda: fault(work, server))
    finally:
        server.stop()
        backend.close()


if __name__ == "__main__":
    main(run)
