"""A 3-node Ray cluster on one machine for the scale-out and fault scenarios (run in a subprocess).

The head node has no CPUs (as on a real cluster, where the head only schedules) and two
worker nodes have one CPU each; custom resources ``node_head`` / ``node_a`` / ``node_b``
name them, so results can say where work ran. Every scenario writes one JSON result
file that the pytest side asserts on.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

NODES = {"node_head": 0, "node_a": 1, "node_b": 1}  # name -> CPUs


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True, help="JSON result file")
    p.add_argument("--work", required=True, help="scratch folder")
    p.add_argument("--model", help="tiny model folder (training)")
    return p.parse_args()


@contextmanager
def cluster():
    """Start the 3-node cluster, connect this driver, and tear everything down afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    from tests.support.openai_server import free_port

    (head, head_cpus), *workers = NODES.items()
    # the dashboard serves ray.util.state; its own port, since another Ray may hold the default 8265
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, "resources": {head: 1},
                                                      "include_dashboard": True, "dashboard_port": free_port()})
    for name, cpus in workers:
        c.add_node(num_cpus=cpus, resources={name: 1})
    try:
        # the state API and job clients find a cluster through RAY_ADDRESS; without it they pick the newest
        # Ray on this machine, which may be someone else's
        os.environ["RAY_ADDRESS"] = c.address
        ray.init(address=c.address, log_to_driver=False)
        c.wait_for_nodes()
        yield c
    finally:
        try:
            ray.shutdown()
        finally:
            c.shutdown()


def node_names() -> dict[str, str]:
    """node id -> custom resource name (node_head / node_a / node_b)."""
    import ray

    out = {}
    for n in ray.nodes():
        name = next((k for k in n["Resources"] if k in NODES), None)
        if name:
            out[n["NodeID"]] = name
    return out


def actors(class_prefix: str) -> list[Any]:
    """Actors (alive and dead) whose class name starts with ``class_prefix``, from Ray's state API."""
    from ray.util.state import list_actors

    return [a for a in list_actors(detail=True, limit=10_000, raise_on_missing_output=False)
            if (a.class_name or "").startswith(class_prefix)]


def kill_pid(pid: int) -> None:
    """SIGKILL one worker process (all nodes of this cluster are on this machine)."""
    os.kill(pid, signal.SIGKILL)


def wait_for(cond: Callable[[], Any], timeout_s: float, every_s: float = 0.2) -> Any:
    """Poll ``cond`` until it returns something truthy; return it, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every_s)
    return None


def part(result: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    """Run one part of a scenario; a failure is recorded under ``result[name]['error']``, not raised."""
    t0 = time.monotonic()
    try:
        result[name] = fn()
    except BaseException:  # noqa: BLE001 - reported to the test, which fails with the traceback
        result[name] = {"error": traceback.format_exc()}
    result[name]["seconds"] = round(time.monotonic() - t0, 1)


def main(run: Callable[[argparse.Namespace, dict[str, Any]], None]) -> None:
    """Parse arguments, start the cluster, run the scenario and write its JSON result."""
    args = parse_args()
    result: dict[str, Any] = {}
    t0 = time.monotonic()
    try:
        with cluster():
            result["startup_seconds"] = round(time.monotonic() - t0, 1)
            run(args, result)
    except BaseException:  # noqa: BLE001
        result["error"] = traceback.format_exc()
    result["total_seconds"] = round(time.monotonic() - t0, 1)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2, default=str)
    sys.exit(0)
