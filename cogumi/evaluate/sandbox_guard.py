"""The harness inside the sandbox: runs one untrusted program, reports completion, guards it in depth.

``python -I -S -B sandbox_guard.py SETTINGS_JSON PROGRAM`` is started by
:mod:`cogumi.evaluate.sandbox` (inside bubblewrap where available). It

1. reads the per-run nonce from an inherited pipe and closes that pipe, so the
   nonce is never in the environment, argv or a file;
2. applies rlimits and drops root only when the launcher could not do it from
   outside (the fallback path without bubblewrap);
3. optionally installs the audit hook (PEP 578) below — defence in depth only,
   the containment is the kernel's: the hook ends the process (exit 86, a line on
   stderr) on writes or deletes outside the working folder, sockets, process
   creation, ctypes, heap walks through ``gc`` and reads of ``/proc/*/mem``;
4. runs PROGRAM as a fresh ``__main__`` module and, only if its code ran to the
   end without an exception or an exit (``sys.exit``, ``os._exit`` and ``atexit``
   tricks all end before that point), writes ``pass <nonce>`` to the verdict pipe
   and leaves with ``os._exit(0)``.

The nonce is in this process, so a program written to attack this harness (walking
frames or reading its own memory) can forge the verdict: it changes a score, never
the containment. Imports nothing from Cogumi so that it runs under ``-I -S``.
"""

import builtins
import json
import os
import resource
import sys
import traceback
import types

VIOLATION_EXIT = 86
EARLY_EXIT = 87
MARKER = "COGUMI_SANDBOX_VIOLATION"
EARLY_MARKER = "COGUMI_SANDBOX_EARLY_EXIT"

# Events that are refused whatever their arguments.
BLOCKED = frozenset({
    "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
    "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
    "socket.sendto", "socket.sendmsg", "urllib.Request", "webbrowser.open", "os.setuid", "os.setgid",
    "resource.setrlimit", "resource.prlimit", "os.chroot", "os.add_dll_directory",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.addaudithook",
})
BLOCKED_IMPORTS = frozenset({"_posixsubprocess", "ctypes", "_ctypes"})
# Events whose first arguments are paths that must stay inside the working folder.
PATH_EVENTS = types.MappingProxyType({
    "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.link": 2, "os.symlink": 2,
    "os.chmod": 1, "os.chown": 1, "os.truncate": 1, "os.utime": 1, "shutil.rmtree": 1, "os.chflags": 1,
    "os.lchflags": 1, "os.mkfifo": 1, "os.mknod": 1, "os.setxattr": 1, "os.removexattr": 1})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def make_hook(root):
    """The audit hook for a program confined to ``root`` (its tables live only in this closure)."""
    write, exit_now, realpath, fsdecode = os.write, os._exit, os.path.realpath, os.fsdecode
    blocked, blocked_imports, path_events, write_flags = BLOCKED, BLOCKED_IMPORTS, PATH_EVENTS, WRITE_FLAGS

    def die(event, detail):
        write(2, f"\n{MARKER} {event} {detail}\n".encode(errors="replace"))
        exit_now(VIOLATION_EXIT)

    def inside(path):
        if isinstance(path, int):
            return True  # a descriptor; dir_fd-relative calls are contained by the mount namespace
        try:
            real = realpath(fsdecode(path))
        except (TypeError, ValueError):
            return False
        return real == root or real.startswith(root + "/")

    def hook(event, args):
        if event in blocked:
            die(event, repr(args)[:200])
        elif event == "import" and args and args[0] in blocked_imports:
            die(event, args[0])
        elif event == "open" and args:
            path, mode, flags = (list(args) + [None, None])[:3]
            if isinstance(path, (str, bytes)) and fsdecode(path).startswith("/proc/") and \
                    fsdecode(path).endswith("/mem"):
                die(event, f"read of {path!r}")
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                (isinstance(flags, int) and flags & write_flags)
            if writes and not inside(path):
                die(event, f"write to {path!r}")
        elif event in path_events:
            for path in args[:path_events[event]]:
                if path is not None and not inside(path):
                    die(event, repr(path))

    return hook


def apply_limits(limits):
    """Memory, CPU time, file size, open files, no core dumps (fallback path only)."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def disarm_process_spawning():
    """Let ``import subprocess`` work while its fork/exec primitive stays out of reach.

    ``subprocess.Popen`` is refused by the audit hook; the C primitive it wraps is not
    audited, so it is removed from ``subprocess`` and ``sys.modules`` and re-importing it
    is refused by the ``import`` rule.
    """
    import subprocess

    subprocess._fork_exec = None
    sys.modules.pop("_posixsubprocess", None)


def verdict_writer(nonce_fd, verdict_fd):
    """Read the nonce, close its pipe, and return the function that reports a completed run."""
    nonce = os.read(nonce_fd, 128).strip()
    os.close(nonce_fd)
    write = os.write

    def report():
        write(verdict_fd, b"pass " + nonce + b"\n")

    return report


def main():
    settings = json.loads(sys.argv[1])
    program = sys.argv[2]
    report = verdict_writer(settings["nonce_fd"], settings["verdict_fd"])
    root = os.path.realpath(settings["workdir"])
    with open(program) as f:
        source = f.read()
    if settings.get("limits"):
        apply_limits(settings["limits"])
    if settings.get("drop_to_nobody") and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    sys.dont_write_bytecode = True
    module = types.ModuleType("__main__")
    module.__file__ = program
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    sys.argv = [program]
    if settings.get("guard", True):
        disarm_process_spawning()
        sys.addaudithook(make_hook(root))
    del settings
    try:
        exec(compile(source, program, "exec"), module.__dict__)
    except SystemExit as exc:
        _flush()
        sys.stderr.write(f"\n{EARLY_MARKER} sys.exit({exc.code!r}) before the end of the program\n")
        _flush()
        os._exit(EARLY_EXIT)
    except BaseException:
        _flush()
        traceback.print_exc()
        _flush()
        os._exit(1)
    _flush()
    report()
    os._exit(0)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the program may have replaced or closed it
            pass


if __name__ == "__main__":
    main()
