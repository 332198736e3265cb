"""`cogumi serve` as a user runs it: a real subprocess, a real port, Ctrl-C/SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.unit.serve.support import free_port

REPO = Path(__file__).resolve().parents[3]


def _cogumi(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    entry = "import sys; from cogumi.cli import app; app(args=sys.argv[1:], prog_name='cogumi')"
    return subprocess.Popen([sys.executable, "-c", entry, *args], cwd=REPO, env=env or _env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COGUMI_API_KEY"}
    return env | {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"} | extra


def test_missing_keys_fail_fast_with_a_clear_error():
    proc = _cogumi("serve", "--config", "configs/local.yaml", "--set", "serve.auth=keys")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "no API key is configured" in out and "Traceback" not in out


@pytest.mark.slow
def test_busy_port_fails_fast_with_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        busy = s.getsockname()[1]
        proc = _cogumi("serve", "--config", "configs/local.yaml", "--port", str(busy))
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{busy}" in out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_answers_and_stops_cleanly_on_signal(sig):
    port = free_port()
    proc = _cogumi("serve", "--config", "configs/local.yaml", "--port", str(port), "--set", "serve.base.n_ctx=512")
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
        answer = client.chat.completions.create(model="cogumi", messages=[{"role": "user", "content": "Hi!"}],
                                                max_tokens=8)
        assert answer.choices[0].message.content and answer.model_extra["cogumi"]["route"] == "base"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert f"cogumi serving at http://127.0.0.1:{port}" in out and "stopped" in out
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=3)
