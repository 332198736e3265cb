"""Run untrusted, model-written Python in a contained process and decide pass/fail from outside it.

Containment does not rely on code inside the sandboxed interpreter. Where bubblewrap is
installed (:mod:`cogumi.evaluate.sandbox_isolation`), each program runs as uid 65534
(or in a user namespace), in fresh pid/net/ipc/uts/mount namespaces, with a read-only
system view, one private writable folder, an empty environment apart from a few fixed
variables, and rlimits set by ``prlimit``; when it ends or times out the pid namespace
takes every process it started down with it. The in-interpreter audit hook
(:mod:`cogumi.evaluate.sandbox_guard`) stays as defence in depth.

Pass/fail: exit status 0 is not enough. The parent draws a random nonce per run and hands
it to the harness over a pipe; the harness writes ``pass <nonce>`` to a second pipe only
after the program's code ran to its end, so ``sys.exit(0)`` midway, ``os._exit(0)``,
``atexit`` tricks or printing a token never pass. Limit: the harness and the program
share one interpreter, so a program written to walk the harness's frames or read its own
memory can forge the report; that changes a score, never the containment.

Every layer that really ran is named by :func:`sandbox_method`; ``evaluate.sandbox.require``
refuses to run without the layers a user asks for (:func:`configure`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cogumi.errors import CogumiError
from cogumi.evaluate import sandbox_guard, sandbox_isolation
from cogumi.evaluate.config import SandboxConfig
from cogumi.evaluate.sandbox_isolation import INSIDE_DIR, INSIDE_HARNESS, NOBODY

log = logging.getLogger(__name__)
GUARD = Path(sandbox_guard.__file__).resolve()
PYTHON_FLAGS = ["-I", "-S", "-B"]  # isolated, no site-packages, no .pyc writes
OUTPUT_CAP = 4000
CONFIG_ENV = "COGUMI_SANDBOX"  # JSON of SandboxConfig; how configure() reaches Ray workers started later
_config: SandboxConfig | None = None


@dataclass
class ExecResult:
    """Outcome of one sandboxed program.

    Attributes:
        status: ``passed`` (the harness reported the program's end with this run's nonce and exit 0),
            ``failed`` (an exception, a failed assert, an early exit), ``timeout``, ``memory``,
            ``violation`` (stopped by the audit hook), ``killed`` (a signal or a limit) or
            ``error`` (the sandbox itself could not run it).
        reason: one line a person can read.
    """

    status: str
    reason: str
    returncode: int | None
    duration_s: float
    stdout: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_dict(self) -> dict:
        return asdict(self)


def configure(config: SandboxConfig) -> None:
    """Make ``config`` the default of :func:`run_program` here and in Ray workers started afterwards."""
    global _config
    _config = config
    os.environ[CONFIG_ENV] = config.model_dump_json()


def current_config() -> SandboxConfig:
    """The configured sandbox settings (``configure``, else ``$COGUMI_SANDBOX``, else the defaults)."""
    if _config is not None:
        return _config
    raw = os.environ.get(CONFIG_ENV)
    return SandboxConfig.model_validate_json(raw) if raw else SandboxConfig()


def available_layers(config: SandboxConfig | None = None) -> tuple[str, ...]:
    """The layers a run gets on this machine with ``config``."""
    cfg = config or current_config()
    return sandbox_isolation.detect(cfg.isolation).layers + (("guard",) if cfg.guard else ())


def check_required(config: SandboxConfig | None = None) -> None:
    """Raise :class:`CogumiError` when ``evaluate.sandbox.require`` asks for a layer this machine lacks."""
    cfg = config or current_config()
    iso = sandbox_isolation.detect(cfg.isolation)
    missing = [layer for layer in cfg.required_layers() if layer not in available_layers(cfg)]
    if missing:
        why = "; ".join(f"{layer}: {iso.notes.get(layer, 'guard=false')}" for layer in missing)
        raise CogumiError(f"the code sandbox cannot apply the required layer(s) {', '.join(missing)} here ({why})",
                          "evaluate.sandbox.require",
                          f"{sandbox_isolation.INSTALL_HINT} and allow namespaces, or set "
                          "evaluate.sandbox.require=any to run with the layers this machine allows")


@functools.lru_cache(maxsize=1)
def can_drop_to_nobody() -> bool:
    """Fallback path only: True when running as root and uid 65534 can start the interpreter."""
    if os.geteuid() != 0:
        return False
    try:
        probe = subprocess.run([sys.executable, *PYTHON_FLAGS, "-c", f"open({str(GUARD)!r}).close()"],
                               user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, timeout=10, env={})
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def sandbox_method(config: SandboxConfig | None = None) -> dict[str, str]:
    """The isolation that really applies on this machine (for manifests and reports)."""
    cfg = config or current_config()
    iso = sandbox_isolation.detect(cfg.isolation)
    layers = available_layers(cfg)
    missing = [layer for layer in (*sandbox_isolation.LAYERS, "guard") if layer not in layers]
    if iso.method == "bubblewrap":
        user = iso.notes["user"]
    else:
        user = "uid/gid 65534 (nobody), dropped inside" if can_drop_to_nobody() else "same user as Cogumi"
    guard = "audit hook (defence in depth)" if cfg.guard else "off"
    return {"sandbox_launcher": iso.method,
            "sandbox_layers": ", ".join(layers) + (f" (missing: {', '.join(missing)})" if missing else ""),
            "sandbox_user": user,
            "sandbox_network": f"{iso.notes['net']}; {guard}",
            "sandbox_files": (iso.notes["mount"] if "mount" in layers else
                              f"temporary working folder, guard on writes outside it ({iso.notes['mount']})")
            + " + RLIMIT_FSIZE",
            "sandbox_processes": iso.notes["pid"] if "pid" in layers else "process group killed on timeout only",
            "sandbox_limits": iso.notes["limits"] + "; wall-clock kill",
            "sandbox_verdict": "per-run nonce written by the harness after the program's end; exit 0 alone fails"}


def run_program(source: str, timeout_s: float = 5.0, memory_mb: int = 512, file_mb: int = 16,
                config: SandboxConfig | None = None) -> ExecResult:
    """Run ``source`` as a Python program in the sandbox.

    Args:
        source: the whole program (e.g. prompt + completion + tests + ``check(...)``).
        timeout_s: wall-clock limit.
        memory_mb: address-space limit.
        file_mb: largest file the program (or its stdout/stderr) may write.
        config: sandbox settings (default: :func:`current_config`).

    Returns:
        An :class:`ExecResult`; this function does not raise for anything the program does.

    Raises:
        CogumiError: ``config.require`` names a layer this machine cannot apply.
    """
    cfg = config or current_config()
    check_required(cfg)
    iso = sandbox_isolation.detect(cfg.isolation)
    workdir = Path(tempfile.mkdtemp(prefix="cogumi-sandbox-"))
    logs = Path(tempfile.mkdtemp(prefix="cogumi-sandbox-logs-"))
    fds: list[int] = []
    try:
        program = workdir / "program.py"
        program.write_text(source)
        bwrap = iso.method == "bubblewrap"
        drop = not bwrap and can_drop_to_nobody()
        if os.geteuid() == 0 and (bwrap or drop):
            os.chown(workdir, NOBODY, NOBODY)
            os.chown(program, NOBODY, NOBODY)
        nonce = secrets.token_hex(16)
        for _ in range(3):
            fds += os.pipe()
        nonce_r, nonce_w, _, verdict_w, _, info_w = fds
        os.write(nonce_w, nonce.encode())
        cpu = max(1, int(timeout_s) + 1)
        settings: dict[str, Any] = {"nonce_fd": nonce_r, "verdict_fd": verdict_w, "guard": cfg.guard}
        if bwrap:
            if iso.bwrap is None:
                raise RuntimeError("sandbox isolation is 'bubblewrap' but names no bwrap executable")
            settings["workdir"] = INSIDE_DIR
            limits: dict[str, int | str] = {"as": memory_mb << 20, "cpu": f"{cpu}:{cpu + 1}",
                                            "fsize": file_mb << 20, "nofile": 64, "core": 0,
                                            **({"nproc": 256} if os.geteuid() == 0 else {})}
            cmd = sandbox_isolation.bwrap_command(iso.bwrap, workdir, [INSIDE_HARNESS, json.dumps(settings),
                                                  f"{INSIDE_DIR}/program.py"], limits=limits, info_fd=info_w)
            env: dict[str, str] = {}
        else:
            settings.update(workdir=str(workdir), drop_to_nobody=drop, limits={
                "RLIMIT_AS": memory_mb << 20, "RLIMIT_CPU": cpu, "RLIMIT_FSIZE": file_mb << 20,
                "RLIMIT_CORE": 0, "RLIMIT_NOFILE": 64})
            cmd = [*iso.unshare_prefix, sys.executable, *PYTHON_FLAGS, str(GUARD), json.dumps(settings),
                   str(program)]
            env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8",
                   "PYTHONHASHSEED": "0"}
        return _execute(cmd, env, workdir, logs, timeout_s, memory_mb, fds, nonce, bwrap)
    finally:
        for fd in fds:  # whatever _execute did not close (a double close could hit another thread's fd)
            _close(fd)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def _execute(cmd: list[str], env: dict[str, str], workdir: Path, logs: Path, timeout_s: float, memory_mb: int,
             fds: list[int], nonce: str, bwrap: bool) -> ExecResult:
    nonce_r, nonce_w, verdict_r, verdict_w, info_r, info_w = fds[:6]
    t0 = time.perf_counter()
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        try:
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True, close_fds=True,
                                    pass_fds=(nonce_r, verdict_w) + ((info_w,) if bwrap else ()))
        except OSError as exc:
            return ExecResult("error", f"could not start the sandbox: {exc}", None, 0.0)
        for fd in (nonce_w, nonce_r, verdict_w, info_w):  # the child's ends: closed here, exactly once
            _close(fd)
            fds.remove(fd)
        init_pid = _namespace_init(info_r, proc.pid) if bwrap else None
        timed_out = False
        try:
            proc.wait(timeout=max(0.0, timeout_s - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc, init_pid)
    duration = time.perf_counter() - t0
    verdict = _read_nonblocking(verdict_r)
    stdout = (logs / "stdout").read_bytes()[-OUTPUT_CAP:].decode(errors="replace")
    stderr = (logs / "stderr").read_bytes()[-OUTPUT_CAP:].decode(errors="replace")
    rc = proc.returncode
    reported = verdict == f"pass {nonce}\n".encode()
    status, reason = _classify(rc, stderr, timed_out, timeout_s, memory_mb, reported, bwrap)
    return ExecResult(status, reason, rc, round(duration, 3), stdout, stderr)


def _namespace_init(info_r: int, outer_pid: int) -> int | None:
    """Host pid of the pid namespace's init, from bubblewrap's ``--info-fd`` (checked to be its child)."""
    raw, deadline = b"", time.monotonic() + 10
    match = None
    while match is None and time.monotonic() < deadline:
        ready, _, _ = select.select([info_r], [], [], max(0.0, deadline - time.monotonic()))
        chunk = _read_nonblocking(info_r) if ready else b""
        if not chunk:
            break
        raw += chunk
        match = re.search(rb'"child-pid":\s*(\d+)\s*[,}\n]', raw)
    try:
        pid = int(match.group(1)) if match else 0
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (ValueError, OSError, IndexError):
        return None
    return pid if ppid == outer_pid else None


def _kill(proc: subprocess.Popen, init_pid: int | None) -> None:
    """SIGKILL the namespace init (the kernel then kills all in it), wait for it, then the launcher's group.

    bubblewrap's launcher only exits after the init has gone, and the init only after every
    process of its namespace, so once ``proc`` is reaped nothing of the run is left.
    """
    if init_pid is not None:
        try:
            os.kill(init_pid, signal.SIGKILL)
            proc.wait(timeout=10)
            return
        except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _read_nonblocking(fd: int, limit: int = 4096) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, limit)
    except (BlockingIOError, OSError):
        return b""


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _classify(rc: int | None, stderr: str, timed_out: bool, timeout_s: float, memory_mb: int, reported: bool,
              bwrap: bool) -> tuple[str, str]:
    if timed_out:
        return "timeout", f"still running after {timeout_s:g}s wall clock; killed"
    if rc == sandbox_guard.VIOLATION_EXIT and sandbox_guard.MARKER in stderr:
        detail = stderr.split(sandbox_guard.MARKER, 1)[1].strip().splitlines()[0]
        return "violation", f"blocked by the sandbox: {detail[:200]}"
    if rc == 0 and reported:
        return "passed", "ran to the end (harness report with this run's nonce)"
    if rc == 0:
        return "failed", "exit 0 before the program's end (no completion report from the harness)"
    if rc == sandbox_guard.EARLY_EXIT and sandbox_guard.EARLY_MARKER in stderr:
        return "failed", stderr.split(sandbox_guard.EARLY_MARKER, 1)[1].strip().splitlines()[0][:200]
    if "MemoryError" in stderr:
        return "memory", f"ran out of its {memory_mb} MB memory limit"
    if bwrap and stderr.startswith("bwrap:"):
        return "error", f"the sandbox could not start: {stderr.strip().splitlines()[0][:200]}"
    sig = -rc if rc is not None and rc < 0 else (rc - 128 if bwrap and rc is not None and 128 < rc < 160 else 0)
    if sig:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        why = {"SIGXCPU": "CPU time limit", "SIGXFSZ": "file size limit", "SIGKILL": "killed",
               "SIGSEGV": "crashed (possibly the memory limit)"}.get(name, "signal")
        return "killed", f"terminated by {name} ({why})"
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return "failed", (last[-1][:300] if last else f"exit status {rc}")
