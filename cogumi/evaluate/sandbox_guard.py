"""Runs one untrusted Python program under limits; executed as a script by :mod:`cogumi.evaluate.sandbox`.

``python -I -S -B sandbox_guard.py SETTINGS_JSON PROGRAM`` sets resource limits,
optionally drops root to ``nobody``, installs an audit hook (PEP 578) and then runs
PROGRAM as ``__main__``. The hook ends the process at once (exit 86, a line on
stderr naming the event) when the program tries to write or delete outside its
working folder, create sockets, start processes, or load native code through
ctypes. It imports nothing from Cogumi so that it runs under ``-I -S``.
"""

import json
import os
import resource
import sys

VIOLATION_EXIT = 86
MARKER = "COGUMI_SANDBOX_VIOLATION"

# Events that are refused whatever their arguments.
BLOCKED = {
    "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
    "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
    "socket.sendto", "socket.sendmsg", "urllib.Request", "webbrowser.open", "os.setuid", "os.setgid",
    "resource.setrlimit", "resource.prlimit", "os.chroot", "os.add_dll_directory",
}
BLOCKED_IMPORTS = {"_posixsubprocess", "ctypes", "_ctypes"}
# Events whose first arguments are paths that must stay inside the working folder.
PATH_EVENTS = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.link": 2, "os.symlink": 2,
               "os.chmod": 1, "os.chown": 1, "os.truncate": 1, "os.utime": 1, "shutil.rmtree": 1,
               "os.chflags": 1, "os.lchflags": 1, "os.mkfifo": 1, "os.mknod": 1, "os.setxattr": 1,
               "os.removexattr": 1}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _die(event, detail):
    os.write(2, f"\n{MARKER} {event} {detail}\n".encode(errors="replace"))
    os._exit(VIOLATION_EXIT)


def _inside(path, root):
    if isinstance(path, int):
        return True  # an already-open descriptor: only 0-2 are inherited
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return real == root or real.startswith(root + os.sep)


def make_hook(root):
    """The audit hook for a program confined to ``root``."""

    def hook(event, args):
        if event in BLOCKED:
            _die(event, repr(args)[:200])
        elif event == "import" and args and args[0] in BLOCKED_IMPORTS:
            _die(event, args[0])
        elif event == "open" and args:
            path, mode, flags = (list(args) + [None, None])[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                (isinstance(flags, int) and flags & WRITE_FLAGS)
            if writes and not _inside(path, root):
                _die(event, f"write to {path!r}")
        elif event in PATH_EVENTS:
            for path in args[:PATH_EVENTS[event]]:
                if path is not None and not _inside(path, root):
                    _die(event, repr(path))

    return hook


def apply_limits(settings):
    """Memory, CPU time, file size, open files, no core dumps."""
    mem = settings["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = settings["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    fsize = settings["file_bytes"]
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def disarm_process_spawning():
    """Let ``import subprocess`` work while its fork/exec primitive stays out of reach.

    ``subprocess.Popen`` is refused by the audit hook; the C primitive it wraps is not
    audited, so it is removed from ``subprocess`` and ``sys.modules`` and re-importing it
    is refused by the ``import`` rule.
    """
    import subprocess

    subprocess._fork_exec = None
    sys.modules.pop("_posixsubprocess", None)


def main():
    settings = json.loads(sys.argv[1])
    program = sys.argv[2]
    root = os.path.realpath(settings["workdir"])
    source = open(program).read()
    apply_limits(settings)
    if settings.get("drop_to_nobody") and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    sys.dont_write_bytecode = True
    disarm_process_spawning()
    sys.argv = [program]
    sys.addaudithook(make_hook(root))
    code = compile(source, program, "exec")
    namespace = {"__name__": "__main__", "__file__": program, "__builtins__": __builtins__}
    exec(code, namespace)


if __name__ == "__main__":
    main()
