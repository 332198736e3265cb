"""Run a cluster scenario (tests/integration/cluster/scenarios/) in its own process and return its JSON.

``tests/conftest.py::ray_local`` is a session-wide Ray inside the pytest process, so a
multi-node cluster cannot live here: each scenario starts ``ray.cluster_utils.Cluster``
in a subprocess (its own process group, killed on timeout) and reports a JSON result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]


def run_scenario(name: str, work: Path, timeout_s: float, *args: str) -> dict[str, Any]:
    """``python -m tests.integration.cluster.scenarios.<name>``; returns its result (fails the test on error)."""
    out = work / f"{name}.json"
    log = work / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", f"tests.integration.cluster.scenarios.{name}", "--out", str(out),
           "--work", str(work), *args]
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the scenario's own group: its driver and the cluster it started
            proc.wait()
            pytest.fail(f"scenario {name} ran past {timeout_s:.0f}s; log tail:\n{_tail(log)}")
    if not out.is_file():
        pytest.fail(f"scenario {name} wrote no result (exit {proc.returncode}); log tail:\n{_tail(log)}")
    result = json.loads(out.read_text())
    if result.get("error"):
        pytest.fail(f"scenario {name} failed:\n{result['error']}\nlog tail:\n{_tail(log)}")
    return result


def check_part(result: dict[str, Any], name: str) -> dict[str, Any]:
    """One part of a scenario's result; fails the test with the part's traceback when it raised."""
    assert name in result, f"scenario result has no part '{name}': {sorted(result)}"
    if result[name].get("error"):
        pytest.fail(f"{name} failed inside the cluster scenario:\n{result[name]['error']}")
    return result[name]


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
