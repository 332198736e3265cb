"""Run untrusted, model-written Python in a contained subprocess.

Layers (each one recorded in :func:`sandbox_method`):

- **wall clock**: the process runs in its own session and its whole group is killed
  with SIGKILL at ``timeout_s``; ``RLIMIT_CPU`` also stops CPU-bound loops;
- **memory**: ``RLIMIT_AS`` caps the address space (allocations fail with MemoryError);
- **files**: a fresh temporary working folder (also ``HOME`` and ``TMPDIR``), deleted
  afterwards; ``RLIMIT_FSIZE`` caps any file, stdout/stderr included; an audit hook
  (:mod:`cogumi.evaluate.sandbox_guard`) ends the program on any write, delete or
  rename outside that folder; when Cogumi runs as root and the interpreter is
  readable by ``nobody``, the program also drops to uid/gid 65534;
- **network**: a new, empty network namespace (``unshare --net``) when the kernel
  allows it, so there is no interface to connect through; the audit hook also
  refuses socket creation and name lookups in every case;
- **processes**: ``os.system``, ``subprocess``, ``fork``/``exec`` and ctypes are refused.

The audit hook is a policy inside the interpreter, not a kernel boundary: it stops
Python code (what benchmarks produce), not a determined native exploit. For hostile
code at scale, run the whole evaluation in a container or gVisor as well.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cogumi.evaluate import sandbox_guard

GUARD = Path(sandbox_guard.__file__).resolve()
PYTHON_FLAGS = ["-I", "-S", "-B"]  # isolated, no site-packages, no .pyc writes
OUTPUT_CAP = 4000


@dataclass
class ExecResult:
    """Outcome of one sandboxed program.

    Attributes:
        status: ``passed`` (exit 0), ``failed`` (an exception, e.g. a failed assert),
            ``timeout``, ``memory``, ``violation`` (an escape attempt), ``killed`` (a signal
            or a limit) or ``error`` (the sandbox itself could not run it).
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


@functools.lru_cache(maxsize=1)
def network_isolation() -> tuple[list[str], str]:
    """(command prefix, description) for running without a network."""
    unshare = shutil.which("unshare")
    if not unshare:
        return [], "audit hook only (no 'unshare' on this machine)"
    prefix = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--net", "--map-root-user"]
    try:
        probe = subprocess.run(prefix + ["true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"audit hook only (unshare failed: {exc})"
    if probe.returncode != 0:
        why = probe.stderr.decode(errors="replace").strip()[:120]
        return [], f"audit hook only (unshare refused: {why})"
    return prefix, "empty network namespace (unshare --net) + audit hook"


@functools.lru_cache(maxsize=1)
def can_drop_to_nobody() -> bool:
    """True when running as root and ``nobody`` can start this interpreter."""
    if os.geteuid() != 0:
        return False
    probe = run_program("pass", timeout_s=10, memory_mb=256, _drop=True, _probe=True)
    return probe.passed


def sandbox_method() -> dict[str, str]:
    """The isolation that really applies on this machine (for manifests and reports)."""
    _, net = network_isolation()
    user = "uid/gid 65534 (nobody)" if can_drop_to_nobody() else "same user as Cogumi"
    return {"sandbox_network": net, "sandbox_user": user,
            "sandbox_files": "temporary working folder + audit hook on writes outside it + RLIMIT_FSIZE",
            "sandbox_limits": "RLIMIT_AS, RLIMIT_CPU, wall-clock kill of the process group"}


def run_program(source: str, timeout_s: float = 5.0, memory_mb: int = 512, file_mb: int = 16,
                _drop: bool | None = None, _probe: bool = False) -> ExecResult:
    """Run ``source`` as a Python program in the sandbox.

    Args:
        source: the whole program (e.g. prompt + completion + tests + ``check(...)``).
        timeout_s: wall-clock limit.
        memory_mb: address-space limit.
        file_mb: largest file the program (or its stdout/stderr) may write.

    Returns:
        An :class:`ExecResult`; this function does not raise for anything the program does.
    """
    drop = can_drop_to_nobody() if _drop is None else _drop
    prefix = [] if _probe else network_isolation()[0]
    workdir = Path(tempfile.mkdtemp(prefix="cogumi-sandbox-"))
    logs = Path(tempfile.mkdtemp(prefix="cogumi-sandbox-logs-"))
    try:
        program = workdir / "program.py"
        program.write_text(source)
        if drop:
            os.chown(workdir, 65534, 65534)
            os.chown(program, 65534, 65534)
        settings = {"workdir": str(workdir), "memory_bytes": memory_mb << 20,
                    "cpu_seconds": max(1, int(timeout_s) + 1), "file_bytes": file_mb << 20,
                    "drop_to_nobody": drop}
        cmd = prefix + [sys.executable, *PYTHON_FLAGS, str(GUARD), json.dumps(settings), str(program)]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0"}
        return _execute(cmd, env, workdir, logs, timeout_s, memory_mb)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def _execute(cmd: list[str], env: dict[str, str], workdir: Path, logs: Path, timeout_s: float,
             memory_mb: int) -> ExecResult:
    t0 = time.perf_counter()
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        try:
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            return ExecResult("error", f"could not start the sandbox: {exc}", None, 0.0)
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
    duration = time.perf_counter() - t0
    stdout = (logs / "stdout").read_bytes()[-OUTPUT_CAP:].decode(errors="replace")
    stderr = (logs / "stderr").read_bytes()[-OUTPUT_CAP:].decode(errors="replace")
    rc = proc.returncode
    return ExecResult(*_classify(rc, stderr, timed_out, timeout_s, memory_mb), rc, round(duration, 3), stdout, stderr)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _classify(rc: int | None, stderr: str, timed_out: bool, timeout_s: float, memory_mb: int) -> tuple[str, str]:
    if timed_out:
        return "timeout", f"still running after {timeout_s:g}s wall clock; killed"
    if sandbox_guard.MARKER in stderr:
        detail = stderr.split(sandbox_guard.MARKER, 1)[1].strip().splitlines()[0]
        return "violation", f"blocked by the sandbox: {detail[:200]}"
    if rc == 0:
        return "passed", "exit 0"
    if "MemoryError" in stderr:
        return "memory", f"ran out of its {memory_mb} MB memory limit"
    if rc is not None and rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
        why = {"SIGXCPU": "CPU time limit", "SIGXFSZ": "file size limit", "SIGKILL": "killed",
               "SIGSEGV": "crashed (possibly the memory limit)"}.get(sig, "signal")
        return "killed", f"terminated by {sig} ({why})"
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return "failed", (last[-1][:300] if last else f"exit status {rc}")
