"""Helpers for the curation integration tests: a config against the local OpenAI server, a CLI runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_config(tmp_path: Path, server, prompts: Path, **over: Any) -> Path:
    """A YAML config whose teacher and judge are the local server; returns its path."""
    model = {"backend": "openai", "base_url": server.base_url, "model": "local-teacher", "timeout_s": 300.0}
    raw = {
        "run": {"name": "t", "root": str(tmp_path / "runs")},
        "judge": model,
        "curate": {
            "prompts": str(prompts),
            "teachers": [{"name": "local", "model": model, "rpm": 6000, "tpm": 10_000_000,
                          "price_in_per_mtok": 1.0, "price_out_per_mtok": 2.0, "concurrency": 2}],
            "max_new_tokens": 24,
            "min_judge_score": 1,
            "judge": {"max_tokens": 40, "concurrency": 2, "price_in_per_mtok": 0.15, "price_out_per_mtok": 0.6},
            "filters": {"min_tokens": 2, "drop_truncated": False, "language": None},
            "retry": {"base_s": 0.5, "max_s": 8.0, "max_attempts": 10},
            "ray": {"batch_size": 4},
        },
    }
    path = tmp_path / "curate.yaml"
    path.write_text(yaml.safe_dump(deep_merge(raw, over)))
    return path


def write_prompts(path: Path, lines: list[Any]) -> Path:
    """JSONL lines: dicts are dumped, bytes written as-is."""
    with open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else json.dumps(line).encode())
            f.write(b"\n")
    return path


def drain(server, quiet_s: float = 1.5) -> None:
    """Wait until the server has answered everything, abandoned (timed-out) requests included."""
    import time

    seen, since = -1, time.monotonic()
    while time.monotonic() - since < quiet_s:
        if len(server.requests) != seen:
            seen, since = len(server.requests), time.monotonic()
        time.sleep(0.1)
    with server._lock:
        pass


def warm(server) -> None:
    """One plain request so that the server's slow first answer does not count as a timeout."""
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=300)
    client.chat.completions.create(model="local-teacher", messages=[{"role": "user", "content": "Hi"}],
                                   max_tokens=2)
    server.requests.clear()


@pytest.fixture
def server(fresh_openai_server):
    """The shared local OpenAI server, warmed up, no faults queued, empty request log.

    Afterwards it waits until the server has answered every request (abandoned ones too), so the
    session never closes the model under a running generation.
    """
    warm(fresh_openai_server)
    fresh_openai_server.paid.clear()
    fresh_openai_server.dropped.clear()
    fresh_openai_server.holding.clear()
    fresh_openai_server.release.clear()
    yield fresh_openai_server
    fresh_openai_server.faults.clear()
    fresh_openai_server.release.set()  # never leave a request parked
    drain(fresh_openai_server)


@pytest.fixture
def cli():
    """Run ``cogumi ...`` in this process; returns (exit code, output)."""
    from cogumi.cli import app

    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    return run
