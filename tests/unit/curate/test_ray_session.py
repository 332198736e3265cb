"""The driver's local Ray leaves nothing behind: SIGTERM unwinds, a killed run's leftovers are reaped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from cogumi.artifacts import RunDir, process_alive, process_started
from cogumi.curate.ray_session import RECORDS, reap_stale_sessions, stop_on_sigterm


def test_sigterm_unwinds_like_ctrl_c():
    old = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        stop_on_sigterm()
        with pytest.raises(SystemExit) as exc:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode
        assert exc.value.code == 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, old)


def _record(run: RunDir, driver: int, session: str, pids: list[int]) -> str:
    folder = os.path.join(run.path, RECORDS)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{socket.gethostname()}-{driver}.json")
    with open(path, "w") as f:
        json.dump({"host": socket.gethostname(), "driver": driver, "driver_started": process_started(driver),
                   "session_dir": session, "pids": {str(p): process_started(p) for p in pids}}, f)
    return path


def test_leftovers_of_a_killed_driver_are_stopped_by_the_next_run(tmp_path):
    run = RunDir.open(str(tmp_path), "r")
    session = tmp_path / "session_x"
    (session / "logs").mkdir(parents=True)
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    listed = subprocess.Popen(sleep)  # an agent the record lists
    with open(session / "logs" / "agent.log", "w") as log:
        holder = subprocess.Popen(sleep, stdout=log)  # a process started later, found by its open session file
    bystander = subprocess.Popen(sleep)  # not part of the session: left alone
    driver = subprocess.Popen([sys.executable, "-c", "pass"])
    driver.wait()
    try:
        path = _record(run, driver.pid, str(session), [listed.pid])
        (message,) = reap_stale_sessions(run)
        assert f"driver pid {driver.pid}" in message and str(listed.pid) in message and str(holder.pid) in message
        for proc in (listed, holder):
            proc.wait(timeout=10)
        assert process_alive(bystander.pid) and not os.path.exists(path)
        assert reap_stale_sessions(run) == []
    finally:
        for proc in (listed, holder, bystander):
            proc.kill()
            proc.wait()


def test_a_live_drivers_session_is_left_alone(tmp_path):
    run = RunDir.open(str(tmp_path), "r")
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = _record(run, os.getpid(), str(tmp_path), [agent.pid])
        assert reap_stale_sessions(run) == [] and os.path.exists(path) and process_alive(agent.pid)
    finally:
        agent.kill()
        agent.wait()
