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


@pytest.fixture(scope="module")
def job_server(tmp_path_factory):
    """A Ray head started the way a cluster starts one (`ray start --head --block`), on its own ports.

    Every port is chosen free: the test session's own Ray already holds the default dashboard-agent
    port (52365), and a second head on that port has no job agent ("No available agent to submit job").
    Its temp dir is private so no later `ray.init()` in this session mistakes it for "the current cluster".
    """
    port = free_port()
    temp_dir = tmp_path_factory.mktemp("rayhead")
    # Jobs run `python jobs/...`: on this head that must be the test's interpreter, as on a real cluster image.
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    cmd = [str(bin_dir / "ray"), "start", "--head", "--block", "--num-cpus=1", f"--temp-dir={temp_dir}",
           f"--port={free_port()}", "--dashboard-host=127.0.0.1", f"--dashboard-port={port}",
           f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
           f"--ray-client-server-port={free_port()}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
                            env=env)
    address = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`ray start --head` exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            break
        except urllib.error.HTTPError:  # up, but asks for Ray's auth token (the client sends it)
            break
        except OSError:
            time.sleep(1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("Ray dashboard did not come up")
    yield address
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # `ray start --block` can take ~30 s to stop; its temp dir is private
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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
