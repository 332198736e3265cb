"""Kernel isolation for the code sandbox: which layers this machine allows and the command that applies them.

The preferred launcher is bubblewrap (``bwrap``, Debian package ``bubblewrap``): a small,
non-setuid tool (Flatpak's) that builds a fresh root from read-only binds, creates the
namespaces, runs an init that reaps everything, and dies with its parent. Raw ``unshare``
would need the same mounts scripted by hand; nsjail/firejail/gVisor are larger or setuid.

Under bubblewrap the program gets (each a *layer*, see :data:`LAYERS`):

- ``user``: as root, ``setpriv`` switches to uid/gid 65534 with no groups, no
  capabilities and ``no_new_privs`` before Python starts; as another user, a user
  namespace (the kernel does not allow a different uid without privileges);
- ``pid``: a pid namespace; when the program ends or is killed, the kernel kills every
  process left in it (``setsid``'d ones included); the host's processes are invisible;
- ``net``: an empty network namespace (loopback only; no host or abstract Unix sockets);
- ``mount``: ``/usr`` (+ the interpreter's prefix) read-only, a fresh ``/proc`` and
  ``/dev``, and one writable folder ``/sandbox`` (also ``/tmp``, ``HOME``, the cwd);
  nothing else of the host exists, so ``dir_fd`` tricks, ``sqlite3`` or ``.pth`` files
  can only land in that folder, which is deleted afterwards;
- ``limits``: rlimits (address space, CPU, file size, open files, processes, no core)
  set by ``prlimit`` outside the interpreter.

The interpreter is the real (base) Python of this environment, bound read-only at its own
path, with ``-I -S -B`` and an environment of a few fixed, secret-free variables.
Without bubblewrap the fallback is a plain subprocess (``unshare --net`` where allowed)
with the in-interpreter guard; :func:`detect` says exactly which layers that leaves.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

LAYERS = ("user", "pid", "net", "mount", "limits")
NOBODY = 65534
INSIDE_DIR = "/sandbox"
INSIDE_HARNESS = "/cogumi/harness.py"
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime")
ENV = {"PATH": "/usr/bin:/bin", "HOME": INSIDE_DIR, "TMPDIR": INSIDE_DIR, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"


@dataclass(frozen=True)
class Isolation:
    """What the launcher can apply here.

    Attributes:
        method: ``bubblewrap``, ``unshare`` or ``subprocess``.
        layers: the kernel/outside layers that apply (a subset of :data:`LAYERS`).
        notes: per-layer description for manifests, including why a layer is missing.
    """

    method: str
    layers: tuple[str, ...]
    notes: dict[str, str] = field(default_factory=dict)
    bwrap: str | None = None
    unshare_prefix: tuple[str, ...] = ()


def interpreter() -> tuple[str, str]:
    """(base interpreter executable, its prefix): the Python under any virtualenv."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


@functools.lru_cache(maxsize=2)
def detect(mode: str = "auto") -> Isolation:
    """Probe this machine once per mode (``auto`` or ``guard-only``)."""
    missing = {}
    if mode == "auto":
        bwrap = shutil.which("bwrap")
        if bwrap:
            why = _probe(bwrap)
            if why is None:
                user = ("uid/gid 65534 via setpriv (no groups, no capabilities, no_new_privs)" if os.geteuid() == 0
                        else "user namespace (same uid as Cogumi, no capabilities)")
                return Isolation("bubblewrap", LAYERS, {
                    "user": user, "pid": "pid namespace, killed as a whole on exit",
                    "net": "empty network namespace", "mount": "read-only /usr + private /sandbox (bubblewrap)",
                    "limits": "prlimit: AS, CPU, FSIZE, NOFILE, NPROC, CORE"}, bwrap=bwrap)
            missing = {layer: f"missing: bubblewrap refused here ({why})" for layer in LAYERS}
        else:
            missing = {layer: f"missing: no 'bwrap' on this machine ({INSTALL_HINT})" for layer in LAYERS}
    else:
        missing = {layer: "missing: isolation=guard-only" for layer in LAYERS}
    prefix, net = _unshare_net()
    notes = dict(missing, limits="setrlimit inside the interpreter, before the program (not outside)")
    if prefix:
        notes["net"] = f"empty network namespace ({net})"
    return Isolation("unshare" if prefix else "subprocess", ("net",) if prefix else (), notes,
                     unshare_prefix=tuple(prefix))


def _probe(bwrap: str) -> str | None:
    """None when bubblewrap can start the interpreter here, else why not."""
    exe, _ = interpreter()
    cmd = bwrap_command(bwrap, None, ["-c", f"open({INSIDE_HARNESS!r}).close()"], limits={"nofile": 64, "core": 0})
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=20, env={})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)[:160]
    return None if res.returncode == 0 else (res.stderr.decode(errors="replace").strip()[:160] or
                                             f"exit {res.returncode} starting {exe}")


def _unshare_net() -> tuple[list[str], str]:
    unshare = shutil.which("unshare")
    if not unshare:
        return [], "no 'unshare'"
    prefix = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--net", "--map-root-user"]
    try:
        probe = subprocess.run(prefix + ["true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"unshare failed: {exc}"
    return (prefix, "unshare --net") if probe.returncode == 0 else ([], "unshare refused")


def _dir_chain(path: str, covered: tuple[str, ...]) -> list[str]:
    """``--dir`` arguments (mode 0755) for the ancestors of ``path`` outside ``covered``."""
    out: list[str] = []
    parts = Path(path).parts
    for i in range(2, len(parts)):
        p = str(Path(*parts[:i]))
        if not any(p == c or p.startswith(c + "/") for c in covered):
            out += ["--perms", "0755", "--dir", p]
    return out


def bwrap_command(bwrap: str, workdir: Path | None, python_args: list[str], limits: dict[str, int | str] | None = None,
                  info_fd: int | None = None) -> list[str]:
    """The full bubblewrap command line that runs ``python -I -S -B *python_args``.

    Args:
        workdir: host folder bound writable at ``/sandbox`` (None: an empty tmpfs, for the probe).
        python_args: arguments after the interpreter flags.
        limits: prlimit values (``as``, ``cpu``, ...) or None.
        info_fd: where bubblewrap writes ``{"child-pid": ...}`` (host pid of the namespace init).
    """
    exe, prefix = interpreter()
    cmd = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--clearenv"]
    if os.geteuid() != 0:
        cmd += ["--unshare-user"]
    covered: tuple[str, ...] = ("/usr",)
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif d == "/usr" or os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
            covered += (d,)
    for f in SYSTEM_FILES:
        cmd += ["--ro-bind-try", f, f]
    for path in {prefix, os.path.dirname(os.path.dirname(exe))}:
        if not any(path == c or path.startswith(c + "/") for c in covered):
            cmd += _dir_chain(path, covered) + ["--ro-bind", path, path]
            covered += (path,)
    from cogumi.evaluate import sandbox_guard

    cmd += ["--perms", "0755", "--dir", os.path.dirname(INSIDE_HARNESS),
            "--ro-bind", str(Path(sandbox_guard.__file__).resolve()), INSIDE_HARNESS,
            "--proc", "/proc", "--dev", "/dev"]
    if workdir is None:
        cmd += ["--perms", "0777", "--tmpfs", INSIDE_DIR]
    else:
        cmd += ["--bind", str(workdir), INSIDE_DIR]
    cmd += ["--symlink", INSIDE_DIR, "/tmp", "--chdir", INSIDE_DIR]
    for k, v in ENV.items():
        cmd += ["--setenv", k, v]
    if info_fd is not None:
        cmd += ["--info-fd", str(info_fd)]
    cmd += ["--"]
    if os.geteuid() == 0:
        cmd += [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                "--clear-groups", "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--"]
    if limits:
        cmd += [shutil.which("prlimit") or "/usr/bin/prlimit", *(f"--{k}={v}" for k, v in limits.items()), "--"]
    return cmd + [exe, "-I", "-S", "-B", *python_args]
