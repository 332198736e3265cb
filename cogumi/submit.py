"""`cogumi submit`: run a phase as a Ray job on a cluster and follow its logs.

A thin wrapper over Ray's ``JobSubmissionClient``: the entrypoint is the phase's
``jobs/<phase>.py`` (the same code the CLI runs), the working directory is shipped
with the job (minus the virtualenv, runs and caches), and the logs are tailed
until the job ends.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from cogumi.errors import CogumiError

EXCLUDES = [".venv", ".venv/**", "runs", "runs/**", ".git", "**/__pycache__", ".pytest_cache", "*.gguf",
            "*.safetensors"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
AGENT_WAIT_S = 300.0  # a fresh head answers before its job agent registers


def job_entrypoint(phase: str, config: str | None, overrides: list[str], extra: list[str],
                   repo: Path) -> str:
    """The shell command a job runs: ``python jobs/<phase>.py --config ... --set ...``."""
    if not (repo / "jobs" / f"{phase}.py").is_file():
        known = sorted(p.stem for p in (repo / "jobs").glob("*.py") if not p.stem.startswith("_"))
        raise CogumiError(f"no job named '{phase}'", f"{repo / 'jobs'}", f"choose one of {', '.join(known)}")
    args = ["python", f"jobs/{phase}.py"]
    if config:
        args += ["--config", config]
    for item in overrides:
        args += ["--set", item]
    return " ".join(shlex.quote(a) for a in [*args, *extra])


def connect(address: str):
    """A JobSubmissionClient for ``address`` (e.g. ``http://head:8265``), or a clear error."""
    from ray.job_submission import JobSubmissionClient

    _use_auth_token_if_present()
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError / RuntimeError / ValueError variants
        raise CogumiError(f"cannot reach the Ray job server ({str(exc).splitlines()[0][:200]})", address,
                          "check the dashboard address (http://<head-ip>:8265), that the cluster is up "
                          "(`ray up cluster.yaml` / `ray status`) and that port 8265 is reachable") from None


def _use_auth_token_if_present() -> None:
    """Send Ray's auth token (RAY_AUTH_TOKEN or ~/.ray/auth_token) when the cluster uses token auth.

    Ray >= 2.5x clusters started locally enable token auth by default; the job client
    only sends the token once token mode is on in this process.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # older Ray: no token auth
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def submit(address: str, entrypoint: str, repo: Path, num_gpus: float = 0, wait: bool = True,
           echo: Callable[[str], None] = print, timeout_s: float | None = None) -> tuple[str, str]:
    """Submit ``entrypoint`` with ``repo`` as working dir; tail logs until it ends when ``wait``.

    Returns:
        (submission id, final status or "PENDING"/"RUNNING" when not waiting).
    """
    client = connect(address)
    job_id = _submit_when_agent_ready(client, echo, entrypoint=entrypoint,
                                      runtime_env={"working_dir": str(repo), "excludes": EXCLUDES},
                                      entrypoint_num_gpus=num_gpus or None)
    echo(f"submitted {job_id}: {entrypoint}")
    if not wait:
        return job_id, str(client.get_job_status(job_id).value)
    asyncio.run(_tail(client, job_id, echo, timeout_s))
    deadline = time.time() + 30
    status = str(client.get_job_status(job_id).value)
    while status not in TERMINAL and time.time() < deadline:
        time.sleep(0.5)
        status = str(client.get_job_status(job_id).value)
    return job_id, status


def _submit_when_agent_ready(client, echo: Callable[[str], None], agent_wait_s: float = AGENT_WAIT_S,
                             **job) -> str:
    """``client.submit_job(**job)``, waiting while a freshly started head has no job agent yet.

    Ray's dashboard answers before the head's job agent registers; the server then replies
    500 "No available agent". That is transient, so retry for ``agent_wait_s``; any other error is raised.
    """
    deadline = time.time() + agent_wait_s
    told = False
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as exc:
            if "No available agent" not in str(exc):
                raise
            if time.time() > deadline:
                raise CogumiError(f"the Ray head has no job agent after {agent_wait_s:.0f} s", "cogumi submit",
                                  "check the head's dashboard_agent.log; a second Ray instance on the head "
                                  "machine holds the agent port 52365 unless one of them was started with "
                                  "`ray start --dashboard-agent-listen-port=<free port>`") from None
            if not told:
                echo(f"the Ray head has no job agent yet; retrying for up to {agent_wait_s:.0f} s")
                told = True
            time.sleep(2)


async def _tail(client, job_id: str, echo: Callable[[str], None], timeout_s: float | None) -> None:
    async def follow():
        async for lines in client.tail_job_logs(job_id):
            for line in lines.splitlines():
                echo(line)

    await asyncio.wait_for(follow(), timeout=timeout_s)
