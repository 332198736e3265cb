"""The driver's Ray: join a cluster, or start a local one that leaves no process behind.

``ray.init()`` without an address starts a local cluster whose GCS and raylet die with
the driver (Ray ties them to it), but a driver killed with SIGKILL leaves the raylet's
agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) running for a minute or more,
holding files in the session folder. So a driver that started its own Ray:

- turns SIGTERM into a normal exit (as Ctrl-C already is), so Ray's exit hook stops the
  whole cluster;
- records its session (folder, process ids) in ``<run>/.local-ray/<host>-<pid>.json``
  and removes the record when it exits;
- and the next run that finds a record whose driver is gone stops what is left of that
  session (:func:`reap_stale_sessions`): SIGKILL cannot be caught, so the clean-up has
  to happen after it.
"""

from __future__ import annotations

import atexit
import json
import os
import posixpath
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from cogumi.artifacts import RunDir, process_alive, process_started
from cogumi.raycluster import connect

RECORDS = ".local-ray"


def init_ray(address: str | None, run: RunDir | None = None) -> bool:
    """Join ``address`` (or RAY_ADDRESS), or start a local Ray owned by this driver.

    Args:
        run: where to record a local session, so that the next run can clean up after a kill.

    Returns:
        True when this call started a local Ray.
    """
    started = False
    if connect(address, log_to_driver=False):
        started = bool(_session_processes())
        if started:
            stop_on_sigterm()
            if run is not None:
                record_session(run)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    return started


def _session_processes() -> dict[str, Any]:
    """``{"session_dir", "pids": {pid: start}}`` of the local Ray this process started ({} when it joined one)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)  # no public API says who started the cluster
    procs = getattr(node, "all_processes", None) or {}
    if node is None or not procs:
        return {}
    pids = [info.process.pid for infos in procs.values() for info in infos]
    for raylet in (info.process.pid for info in procs.get("raylet", [])):
        pids += _children(raylet)  # its agents, started by now
    return {"session_dir": node.get_session_dir_path(), "pids": {str(p): process_started(p) for p in pids}}


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C (manifests are closed, Ray's exit hook stops the local cluster)."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread

    def exit_on_signal(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, exit_on_signal)


def _record_path(run: RunDir, host: str, pid: int) -> str:
    return posixpath.join(run.path, RECORDS, f"{host}-{pid}.json")


def record_session(run: RunDir) -> str:
    """Write this driver's local Ray session into the run directory; removed again at exit."""
    session = _session_processes()
    host, pid = socket.gethostname(), os.getpid()
    path = _record_path(run, host, pid)
    run.fs.create_dir(posixpath.dirname(path), recursive=True)
    body = {"host": host, "driver": pid, "driver_started": process_started(pid), **session}
    with run.fs.open_output_stream(path) as f:
        f.write(json.dumps(body, indent=2).encode())

    def remove() -> None:
        try:
            run.fs.delete_file(path)
        except OSError:
            pass

    atexit.register(remove)  # runs before Ray's own exit hook (registered earlier, at import)
    return path


def _holding_files_in(folder: str) -> list[int]:
    """Processes with a file open under ``folder`` (Linux /proc; others' processes are skipped)."""
    prefix, found = folder.rstrip("/") + "/", []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd).startswith(prefix) for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _stop(pids: list[int], grace_s: float = 3.0) -> list[int]:
    """SIGTERM ``pids``, SIGKILL those still alive after ``grace_s``; returns the ones signalled."""
    sent = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            sent.append(pid)
        except OSError:
            continue
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(process_alive(p) for p in sent):
        time.sleep(0.1)
    for pid in sent:
        if process_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return sent


def reap_stale_sessions(run: RunDir) -> list[str]:
    """Stop what is left of local Rays started by drivers of this run that were killed.

    Only records written on this host, whose driver is gone, are acted on; a process is
    stopped when it is one the record lists (same start time, so not a reused pid) or
    when it holds files in the recorded session folder.

    Returns:
        One message per stale session (what was stopped), for the console.
    """
    folder = posixpath.join(run.path, RECORDS)
    host, messages = socket.gethostname(), []
    for info in run.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".json"):
            continue
        try:
            with run.fs.open_input_stream(info.path) as f:
                rec = json.loads(f.read().decode())
            driver, session = int(rec["driver"]), str(rec.get("session_dir") or "")
            listed = {int(p): s for p, s in (rec.get("pids") or {}).items()}
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if rec.get("host") != host or process_alive(driver, rec.get("driver_started")):
            continue  # another machine's, or a live driver's
        left = {p for p, started in listed.items() if started is not None and process_alive(p, started)}
        if session.startswith("/") and Path(session).is_dir():
            left.update(_holding_files_in(session))
        left.discard(os.getpid())
        stopped = _stop(sorted(left))
        if stopped:
            messages.append(f"stopped {len(stopped)} process(es) left by the local Ray of a killed run "
                            f"(driver pid {driver}, session {session}): pids {', '.join(map(str, stopped))}")
        run.fs.delete_file(info.path)
    return messages
