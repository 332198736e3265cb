"""How many routing rows the router needs to reach the spec's targets (accuracy > 95 %, ECE < 0.05).

SYNTHETIC data, stated as such: prompts are the local proxy tasks (real sentences,
embedded with the packaged all-MiniLM-L6-v2); the four confidence features are drawn
so that the label ("modifier better") follows the mean logprob with label noise
``--flip`` (the best possible accuracy is ``1 - flip``). The full router fit
(split, PCA, both MLPs, calibration, sweep) runs at each size and the held-out test
split's accuracy and ECE are printed as JSON. It measures the trainer, not a model.

    python benchmarks/route_targets.py [--sizes 200 1000 4000] [--flip 0.02] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time

import torch


def synthetic(n: int, flip: float, seed: int) -> list[dict]:
    from cogumi.route.proxy import proxy_tasks

    r = random.Random(seed)
    rows = []
    for t in proxy_tasks(n, ["code", "reasoning", "automation"], seed=seed):
        hard = r.random() < 0.45
        mean = -0.4 - (1.2 if hard else 0.0) + r.gauss(0, 0.25)
        label = int(hard) if r.random() >= flip else int(not hard)
        rows.append({"prompt": t["prompt"], "domain": t["domain"], "label": label, "base_mean_logprob": mean,
                     "base_min_logprob": 2.5 * mean + r.gauss(0, 0.4), "base_entropy": -0.7 * mean + r.gauss(0, 0.2),
                     "base_length": math.log1p(r.randint(4, 64))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 4000])
    ap.add_argument("--flip", type=float, default=0.02, help="label noise (share of flipped labels)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from cogumi.route.config import RouterConfig
    from cogumi.route.embedding import Embedder
    from cogumi.route.escalation import load_escalation_set, train_escalation
    from cogumi.route.train import fit_router

    emb = Embedder()
    esc_rows = load_escalation_set()
    esc = train_escalation(esc_rows, emb.encode([e["text"] for e in esc_rows]))
    out = []
    for n in args.sizes:
        rows = synthetic(n, args.flip, seed=n)
        t = time.perf_counter()
        fit = fit_router(rows, emb.encode([r["prompt"] for r in rows]), esc, RouterConfig())
        m = fit.metrics
        out.append({"rows": len(rows), "test_rows": m["rows"]["test"], "fit_s": round(time.perf_counter() - t, 1),
                    "test_accuracy": round(m["cascade"]["test_accuracy"], 4),
                    "test_ece_raw": round(m["cascade"]["test_ece_raw"], 4), "test_ece": round(m["cascade"]["test_ece"], 4),
                    "calibration": m["cascade"]["calibration"],
                    "pre_route_accuracy": round(m["pre"]["test_accuracy"], 4),
                    "accuracy_met": m["targets"]["router_accuracy"]["met"], "ece_met": m["targets"]["ece"]["met"]})
    print(json.dumps({"data": f"synthetic (proxy prompts, drawn features, label noise {args.flip})",
                      "best_possible_accuracy": 1 - args.flip, "results": out}, indent=2))


if __name__ == "__main__":
    main()
