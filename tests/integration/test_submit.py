"""`cogumi submit` against a real Ray job server (a separate local cluster with a dashboard)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cogumi.cli import app
from tests.support.openai_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]

HEAD = """
import signal, sys, time, ray
ray.init(address="local", num_cpus=1, include_dashboard=True, dashboard_host="127.0.0.1",
         dashboard_port=int(sys.argv[1]), log_to_driver=False)
signal.signal(signal.SIGTERM, lambda *a: (ray.shutdown(), sys.exit(0)))
print("ready", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def job_server():
    port = free_port()
    # Jobs run `python jobs/...`: on this head that must be the test's interpreter, as on a real cluster image.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", HEAD, str(port)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    address = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            break
        except urllib.error.HTTPError:  # up, but asks for Ray's auth token (the client sends it)
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("Ray dashboard did not come up")
    yield address
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


def test_submit_runs_a_job_and_tails_its_logs(job_server, monkeypatch):
    monkeypatch.chdir(REPO)
    res = CliRunner().invoke(app, ["submit", "generate", "--address", job_server, "--config", "configs/local.yaml",
                                   "--set", "sampling.max_tokens=8", "--", "Say hello.", "--json"])
    assert res.exit_code == 0, res.output
    assert "submitted raysubmit_" in res.output and '"backend": "llamacpp"' in res.output


def test_failed_job_exits_1(job_server, monkeypatch):
    monkeypatch.chdir(REPO)
    res = CliRunner().invoke(app, ["submit", "generate", "--address", job_server, "--set", "train.lora.r=oops",
                                   "--", "hi"])
    assert res.exit_code == 1 and "FAILED" in res.output and "train.lora.r" in res.output


def test_unreachable_cluster_is_a_clear_error():
    res = CliRunner().invoke(app, ["submit", "doctor", "--address", f"http://127.0.0.1:{free_port()}"])
    assert res.exit_code == 2 and "cannot reach the Ray job server" in res.output
