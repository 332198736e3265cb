"""Code sandbox overhead per candidate: the old in-interpreter guard path vs bubblewrap, side by side.

Usage: python benchmarks/sandbox.py [--rounds 10] [--problems 8]

Each candidate is a real HumanEval program (the problem's canonical solution with its
tests, as :func:`cogumi.evaluate.codebench.build_program` builds it). Three ways of
running it are interleaved, candidate by candidate, so machine noise hits all alike:

- ``plain``: ``python -I -S -B program.py`` in a subprocess, no containment (the floor);
- ``guard-only``: the previous sandbox, ``evaluate.sandbox.isolation=guard-only``
  (subprocess, ``unshare --net`` where allowed, in-interpreter audit hook);
- ``bubblewrap``: the default sandbox (uid 65534, pid/net/mount namespaces, prlimit, guard).

Reported: median and p90 wall time per candidate and the overhead over ``plain`` (ms).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cogumi.evaluate import codebench, sandbox_isolation
from cogumi.evaluate.config import SandboxConfig
from cogumi.evaluate.sandbox import run_program


def plain(source: str) -> bool:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "program.py"
        path.write_text(source)
        return subprocess.run([sys.executable, "-I", "-S", "-B", str(path)], cwd=d, capture_output=True,
                              timeout=30).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--problems", type=int, default=8)
    args = ap.parse_args()
    problems = codebench.load_humaneval(args.problems)
    programs = [codebench.build_program(p, codebench.reference_completion(p)) for p in problems]
    modes = {"plain": plain,
             "guard-only": lambda s: run_program(s, config=SandboxConfig(isolation="guard-only")).passed,
             "bubblewrap": lambda s: run_program(s, config=SandboxConfig(isolation="auto")).passed}
    if sandbox_isolation.detect("auto").method != "bubblewrap":
        raise SystemExit(f"bubblewrap unavailable: {sandbox_isolation.detect('auto').notes['pid']}")
    load = round(os.getloadavg()[0], 2)
    times: dict[str, list[float]] = {m: [] for m in modes}
    failures: dict[str, int] = {m: 0 for m in modes}
    for run in modes.values():  # warm-up: probes, page cache
        run(programs[0])
    for _ in range(args.rounds):
        for source in programs:
            for mode, run in modes.items():
                t0 = time.perf_counter()
                ok = run(source)
                times[mode].append((time.perf_counter() - t0) * 1000)
                failures[mode] += not ok
    floor = statistics.median(times["plain"])
    out = {"machine": f"{os.cpu_count()} vCPU, {platform.machine()}, {platform.platform()}",
           "load_average_start": load, "runs_per_mode": len(times["plain"]),
           "modes": {m: {"median_ms": round(statistics.median(t), 1),
                         "p90_ms": round(statistics.quantiles(t, n=10)[-1], 1),
                         "overhead_vs_plain_ms": round(statistics.median(t) - floor, 1),
                         "failed": failures[m]} for m, t in times.items()}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
