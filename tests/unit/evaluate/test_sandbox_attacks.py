"""Each attack class from the sandbox review, contained by the kernel layers even with the audit guard off.

Most tests run the candidate with ``guard=False`` (the state a candidate reaches after
switching the guard off from inside) and check what the *host* sees afterwards.
"""

from __future__ import annotations

import os
import random
import socket
import sysconfig
import time
import uuid
from pathlib import Path

import pytest

from cogumi.errors import CogumiError
from cogumi.evaluate import sandbox_isolation
from cogumi.evaluate.config import SandboxConfig
from cogumi.evaluate.sandbox import available_layers, run_program, sandbox_method

NO_GUARD = SandboxConfig(guard=False)
needs_bwrap = pytest.mark.skipif(
    sandbox_isolation.detect("auto").method != "bubblewrap",
    reason="bubblewrap unavailable here (apt-get install bubblewrap; .ci/run installs it): "
           + sandbox_isolation.detect("auto").notes.get("pid", ""))


def _host_processes_with(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


@needs_bwrap
def test_candidate_runs_unprivileged_with_an_empty_environment():
    res = run_program("import os\nprint(os.getuid(), os.getgid(), os.getgroups(), sorted(os.environ))\n"
                      "assert not os.access('/usr/bin', os.W_OK)", config=NO_GUARD)
    assert res.passed, res.reason
    uid, gid, groups, *_ = res.stdout.split(" ", 3)
    if os.geteuid() == 0:
        assert (uid, gid, groups) == ("65534", "65534", "[]")
    assert "COGUMI" not in res.stdout and "KEY" not in res.stdout


@needs_bwrap
def test_disabling_the_guard_from_inside_gains_nothing(tmp_path):
    """The review's route (tables via ``sys.modules['__main__']``) and gc are gone or refused; still nothing leaks."""
    target = tmp_path / "escaped.txt"
    attack = ("import sys\nm = sys.modules['__main__']\n"
              "for name in ('BLOCKED', 'BLOCKED_IMPORTS', 'PATH_EVENTS'):\n"
              "    getattr(m, name, set()).clear()\n"
              f"open({str(target)!r}, 'w').write('x')\n")
    res = run_program(attack)
    assert not res.passed and not target.exists()
    res = run_program("import gc\nhooks = [o for o in gc.get_objects() if callable(o)]")
    assert res.status == "violation" and "gc.get_objects" in res.reason
    # with the guard entirely off (what a successful disabling would reach), the host is still untouched
    res = run_program(f"open({str(target)!r}, 'w').write('x')", config=NO_GUARD)
    assert not res.passed and not target.exists()


@needs_bwrap
def test_dir_fd_sqlite_chmod_and_pth_writes_land_nowhere_on_the_host(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    victim.chmod(0o644)
    pth = Path(sysconfig.get_paths()["purelib"]) / f"zz-cogumi-{uuid.uuid4().hex}.pth"
    attack = f"""
import os, sqlite3
tries = []
def attempt(name, fn):
    try:
        fn(); tries.append(name + ':ok')
    except Exception as exc:
        tries.append(name + ':' + type(exc).__name__)
d = os.open('/', os.O_RDONLY)
attempt('dirfd-write', lambda: os.write(os.open({str(tmp_path / 'new.txt')[1:]!r}, os.O_CREAT | os.O_WRONLY, dir_fd=d), b'x'))
attempt('dirfd-unlink', lambda: os.unlink({str(victim)[1:]!r}, dir_fd=d))
attempt('sqlite', lambda: sqlite3.connect({str(tmp_path / 'x.db')!r}).execute('create table t(x)'))
attempt('fchmod-host', lambda: os.chmod(os.open({str(victim)!r}, os.O_RDONLY), 0o777))
attempt('fchmod-system', lambda: os.chmod(os.open('/usr/bin', os.O_RDONLY), 0o777))
attempt('pth', lambda: open({str(pth)!r}, 'w').write('import os; os.system("touch /tmp/pwned")'))
print(tries)
"""
    res = run_program(attack, config=NO_GUARD)
    assert res.passed, res.reason
    assert ":ok" not in res.stdout, res.stdout
    assert victim.read_text() == "precious" and (victim.stat().st_mode & 0o777) == 0o644
    assert not (tmp_path / "new.txt").exists() and not (tmp_path / "x.db").exists() and not pth.exists()
    assert (os.stat("/usr/bin").st_mode & 0o777) == 0o755


@needs_bwrap
def test_parent_secrets_never_reach_the_candidate_or_the_result(monkeypatch):
    secret = f"sk-{uuid.uuid4().hex}"
    monkeypatch.setenv("COGUMI_API_KEY", secret)
    monkeypatch.setenv("OPENAI_API_KEY", secret + "-teacher")
    attack = """
import os
found = [repr(dict(os.environ))]
for path in [f'/proc/{os.getppid()}/environ', '/proc/1/environ', '/proc/self/environ'] + \\
        [f'/proc/{p}/environ' for p in os.listdir('/proc') if p.isdigit()] + \\
        [f'/proc/{p}/cmdline' for p in os.listdir('/proc') if p.isdigit()]:
    try:
        found.append(open(path, 'rb').read().decode(errors='replace'))
    except OSError as exc:
        found.append(str(exc))
print(found)
raise RuntimeError('|'.join(found))
"""
    for config in (NO_GUARD, None):
        res = run_program(attack, config=config)
        blob = res.stdout + res.stderr + res.reason
        assert res.status == "failed" and "RuntimeError" in res.reason
        assert secret not in blob and "COGUMI_API_KEY" not in blob


@needs_bwrap
def test_parent_survives_kill_attempts():
    attack = """
import os, signal
out = []
for what, fn in [('pidfd', lambda: signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)),
                 ('kill-ppid', lambda: os.kill(os.getppid(), signal.SIGKILL)),
                 ('kill-1', lambda: os.kill(1, signal.SIGKILL)),
                 ('killpg', lambda: os.killpg(os.getpgid(os.getppid()), signal.SIGKILL))]:
    try:
        fn(); out.append(what + ':sent')
    except Exception as exc:
        out.append(what + ':' + type(exc).__name__)
print(out)
"""
    res = run_program(attack, config=NO_GUARD)
    assert res.passed, (res.reason, res.stderr[-300:])
    assert ":sent" not in res.stdout, res.stdout
    assert run_program("assert True").passed  # this process, and the launcher, are fine


@needs_bwrap
@pytest.mark.parametrize("then", ["pass", "import time\ntime.sleep(60)"], ids=["returns", "times-out"])
def test_spawned_processes_all_die_with_the_run(then):
    marker = f"{random.randint(1000, 9999)}.{random.randint(100000, 999999)}"
    spawn = f"""
import os, subprocess
for i in range(100):
    subprocess.Popen(['sleep', '{marker}'], start_new_session=(i % 2 == 0))
if os.fork() == 0:  # a double-forked daemon in its own session
    os.setsid()
    if os.fork() == 0:
        os.execvp('sleep', ['sleep', '{marker}'])
    os._exit(0)
{then}
"""
    t0 = time.perf_counter()
    res = run_program(spawn, timeout_s=3, config=NO_GUARD)
    assert res.status == ("passed" if then == "pass" else "timeout"), (res.reason, res.stderr[-300:])
    assert time.perf_counter() - t0 < 5
    assert _host_processes_with(f"sleep\0{marker}") == []


@needs_bwrap
def test_no_network_tcp_or_unix_sockets(tmp_path):
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    path = str(tmp_path / "s.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    unix.listen(1)
    abstract = socket.socket(socket.AF_UNIX)
    name = f"\0cogumi-{uuid.uuid4().hex}"
    abstract.bind(name)
    abstract.listen(1)
    attack = f"""
import socket
out = []
for fam, addr in [(socket.AF_INET, ('127.0.0.1', {tcp.getsockname()[1]})), (socket.AF_UNIX, {path!r}),
                  (socket.AF_UNIX, {name!r})]:
    s = socket.socket(fam)
    s.settimeout(1)
    try:
        s.connect(addr); out.append('connected')
    except OSError as exc:
        out.append(type(exc).__name__)
print(out)
"""
    try:
        res = run_program(attack, config=NO_GUARD)
    finally:
        for s in (tcp, unix, abstract):
            s.close()
    assert res.passed, res.reason
    assert "connected" not in res.stdout, res.stdout


WRONG = "def add(a, b):\n    return a - b\n"
TESTS = "\nassert add(2, 2) == 4, 'add is wrong'\n"


@pytest.mark.parametrize("cheat", [
    "import atexit, os\natexit.register(lambda: os._exit(0))\n",
    "import sys\nsys.exit(0)\n",
    "import os\nos._exit(0)\n",
    "raise SystemExit(0)\n",
    "import os, sys\nreal = os._exit\nos._exit = lambda code: real(0)\nsys.excepthook = lambda *a: None\n",
    "import builtins, traceback\nbuiltins.AssertionError = type('Fake', (Exception,), {})\n"
    "traceback.print_exc = lambda *a, **k: None\n",
    "import sys\nprint('pass ' + '0' * 32)\nsys.stderr.write('pass ' + 'f' * 32 + '\\n')\n",
    "import os\nfor fd in map(int, os.listdir('/proc/self/fd')):\n    try:\n        os.write(fd, b'pass ' + os.read(fd, 64))\n"
    "    except OSError:\n        pass\n    try:\n        os.write(fd, b'pass ' + b'0' * 32 + b'\\n')\n"
    "    except OSError:\n        pass\n",
    "import threading, os, time\nthreading.Thread(target=lambda: (time.sleep(0.01), os._exit(0))).start()\n",
], ids=["atexit-exit0", "sys-exit0", "os-exit0", "raise-systemexit", "patch-exit", "patch-assert-helpers",
        "print-token", "forge-on-fds", "thread-exit0"])
@pytest.mark.parametrize("guard", [True, False], ids=["guard", "no-guard"])
def test_a_wrong_solution_cannot_be_made_to_pass(cheat, guard):
    res = run_program(WRONG + cheat + TESTS + "import time\ntime.sleep(0.2)\n",
                      config=SandboxConfig(guard=guard))
    assert not res.passed, (res.status, res.reason)
    assert run_program(WRONG.replace("a - b", "a + b") + TESTS, config=SandboxConfig(guard=guard)).passed


def test_guard_only_mode_keeps_the_old_path_and_says_what_is_missing():
    cfg = SandboxConfig(isolation="guard-only")
    assert run_program("assert 1 + 1 == 2", config=cfg).passed
    assert not run_program("import os\nos._exit(0)\nassert False", config=cfg).passed
    assert available_layers(cfg) in {("guard",), ("net", "guard")}
    method = sandbox_method(cfg)
    assert "missing: " in method["sandbox_layers"] and "pid" in method["sandbox_layers"].split("missing: ")[1]


def test_require_full_refuses_to_run_without_the_layers():
    cfg = SandboxConfig(isolation="guard-only", require="full")
    with pytest.raises(CogumiError) as err:
        run_program("print('never runs')", config=cfg)
    text = str(err.value)
    assert "evaluate.sandbox.require" in text and "bubblewrap" in text and "pid" in text
    with pytest.raises(CogumiError):
        run_program("pass", config=SandboxConfig(guard=False, require=["guard"]))


@needs_bwrap
def test_require_full_runs_where_bubblewrap_works():
    assert run_program("assert True", config=SandboxConfig(require="full")).passed
    assert set(available_layers()) == {"user", "pid", "net", "mount", "limits", "guard"}


def test_concurrent_runs_neither_leak_nor_cross_descriptors():
    """codebench runs programs from a thread pool: each run owns its pipes and closes each exactly once."""
    from concurrent.futures import ThreadPoolExecutor

    before = len(os.listdir("/proc/self/fd"))
    sources = ["assert 1 + 1 == 2", "assert 1 == 2", "print('x')", "import os\nos._exit(0)"] * 3
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda s: run_program(s).status, sources))
    assert statuses == ["passed", "failed", "passed", "failed"] * 3
    assert len(os.listdir("/proc/self/fd")) <= before
