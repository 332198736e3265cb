"""Curation on a 3-node cluster whose only shared storage is an ``s3://`` run root (a local moto server).

Each node (head + 2 workers, 1 CPU each) keeps Ray's scratch (session, logs, spilled objects)
in its own folder; the run root is the bucket. The driver runs the pipeline's curate stage
(Ray Data over the three nodes, the teacher a local OpenAI-compatible server), then the
consumers resolve ``stage:curate/...`` from the bucket. The result says where tasks ran, which
objects the bucket holds and whether any stored text names a node's scratch folder.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from tests.integration.cluster.scenarios.common import parse_args, part
from tests.integration.cluster.scenarios.curate import PROMPTS, finished_task_nodes

BUCKET = "cogumi-runs"
NODES = ("head", "a", "b")
N_PROMPTS = 4  # one per batch: enough batches for two nodes, few enough for a loaded 2-core machine


def start_s3() -> tuple[Any, Any]:
    """moto's S3 server on a free port; the AWS env vars point this process (and the nodes it starts) at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.integration.storage.conftest import s3_env
    from tests.support.openai_server import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(s3_env(f"http://127.0.0.1:{port}"))
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return server, client


def start_cluster(scratch: dict[str, str]) -> Any:
    import ray
    from ray.cluster_utils import Cluster

    from tests.support.openai_server import free_port

    small = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}
    c = Cluster(initialize_head=True, head_node_args={**small, "temp_dir": scratch["head"], "resources": {"node_head": 1},
                                                      "include_dashboard": True, "dashboard_port": free_port()})
    for name in NODES[1:]:
        c.add_node(**small, temp_dir=scratch[name], resources={f"node_{name}": 1})
    os.environ["RAY_ADDRESS"] = c.address
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    return c


def curate_on_s3(work: Path, server: Any, client: Any, scratch: dict[str, str]) -> dict[str, Any]:
    from cogumi.config import load_config
    from cogumi.pipeline.stages import PipelinePlan, count_records
    from cogumi.train.data import read_examples, resolve_ref
    from tests.integration.curate.conftest import write_config, write_prompts

    prompts = write_prompts(work / "prompts.jsonl",
                            [{"instruction": p, "domain": d, "difficulty": "easy"} for p, d in PROMPTS[:N_PROMPTS]])
    config = write_config(work, server, prompts, run={"name": "r", "root": f"s3://{BUCKET}/runs"},
                          curate={"max_new_tokens": 4, "cache": str(work / "cache"), "judge": {"enabled": False},
                                  "dedup": {"enabled": False}, "ray": {"batch_size": 1, "teacher_workers": 2}})
    cfg = load_config(str(config), [])
    t0 = time.time()
    result = PipelinePlan(cfg).curate(cfg, False)
    plan = PipelinePlan(cfg)
    keys = sorted(o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
                  for o in page.get("Contents", []))
    texts = {k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read().decode(errors="replace")
             for k in keys if k.endswith((".json", ".jsonl", ".md", ".yaml"))}
    return {"status": result.final_status(), "rows": result.summary["summary"]["rows"], "keys": keys,
            "finished_tasks_by_node": finished_task_nodes(t0),
            "scratch_named_in": sorted(k for k, t in texts.items() if any(d in t for d in scratch.values())),
            "examples": len(read_examples(resolve_ref("stage:curate/curated.parquet", plan.run), "train.data")),
            "jsonl_records": count_records(plan.run, "curate", "curated.jsonl"),
            "rerun_status": PipelinePlan(cfg).curate(cfg, False).final_status(),
            "local_s3_dirs": [str(p) for p in Path.cwd().glob("s3:*")] + [str(p) for p in work.glob("**/s3:*")],
            "scratch_used": {n: any(Path(d).iterdir()) for n, d in scratch.items()}}


def main() -> None:
    import ray

    from cogumi.config import ModelConfig
    from cogumi.models.inference import make_backend
    from tests.support.openai_server import LocalOpenAIServer

    args = parse_args()
    work = Path(args.work)
    result: dict[str, Any] = {}
    t0 = time.monotonic()
    # short folders: Ray's unix sockets live inside them
    scratch = {n: tempfile.mkdtemp(prefix=f"cg{n}-", dir="/tmp") for n in NODES}
    cluster = s3 = backend = server = None
    try:
        s3, client = start_s3()
        cluster = start_cluster(scratch)
        result["startup_seconds"] = round(time.monotonic() - t0, 1)
        backend = make_backend(ModelConfig(backend="llamacpp", n_ctx=2048))
        server = LocalOpenAIServer(backend).start()
        part(result, "curate", lambda: curate_on_s3(work, server, client, scratch))
        result["scratch"] = scratch
    except BaseException:  # noqa: BLE001 - reported to the test
        result["error"] = traceback.format_exc()
    finally:
        for stop in (lambda: server and server.stop(), lambda: backend and backend.close(), ray.shutdown,
                     lambda: cluster and cluster.shutdown(), lambda: s3 and s3.stop()):
            try:
                stop()
            except Exception:  # noqa: BLE001
                pass
    result["total_seconds"] = round(time.monotonic() - t0, 1)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2, default=str)


if __name__ == "__main__":
    main()
