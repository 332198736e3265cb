"""The same curation online vs through the provider batch API: cost at the configured prices and wall time.

Usage: python benchmarks/batch_cost.py [--prompts 1000] [--batch-delay-s 1.0] [--teacher-price 2.5 10]
                                       [--judge-price 0.15 0.6] [--discount 0.5]

One local server in this process (``tests/support/batch_server.py``: real HTTP, online
``/v1/chat/completions`` plus the OpenAI files + batches endpoints) answers with the canned
backend (``tests/support/canned_backend.py``: instant, deterministic), so the wall time is
Cogumi's own overhead, not a model's. The whole curation stage (teacher, rule filters,
judge; dedup off) runs twice on a local Ray with 2 CPUs, each with its own empty response
cache: teacher and judge ``mode: online``, then ``mode: batch``. The local server completes a
batch ``--batch-delay-s`` after it is created; a real provider takes minutes to 24 hours.

Reported per mode: rows ok, USD the curate report bills, USD the server's own records give
at the same prices (they must agree), the online-equivalent USD, and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOPICS = ("photosynthesis", "binary search", "compound interest", "the water cycle", "recursion", "inflation",
          "plate tectonics", "hash tables", "vaccines", "supply and demand")


def write_prompts(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            topic = TOPICS[i % len(TOPICS)]
            f.write(json.dumps({"id": f"p{i:05d}", "instruction": f"Explain {topic} to a student, case {i}?",
                                "domain": "science"}) + "\n")


def config(root: Path, prompts: Path, base_url: str, mode: str, args) -> dict:
    model = {"backend": "openai", "base_url": base_url, "model": "local-teacher", "timeout_s": 60.0}
    batch = {"poll_s": 0.5, "discount": args.discount}
    return {
        "run": {"name": mode, "root": str(root)},
        "judge": model,
        "curate": {
            "prompts": str(prompts), "cache": str(root / f"cache-{mode}"), "max_new_tokens": 64,
            "min_judge_score": 1, "dedup": {"enabled": False}, "write_jsonl": False,
            "filters": {"min_tokens": 2, "drop_truncated": False, "language": None, "pii": "off"},
            "teachers": [{"name": "teacher", "model": model, "mode": mode, "batch": batch, "rpm": 1_000_000,
                          "tpm": 1_000_000_000, "concurrency": 8, "price_in_per_mtok": args.teacher_price[0],
                          "price_out_per_mtok": args.teacher_price[1]}],
            "judge": {"mode": mode, "batch": batch, "concurrency": 8, "rpm": 1_000_000, "tpm": 1_000_000_000,
                      "max_tokens": 64, "price_in_per_mtok": args.judge_price[0],
                      "price_out_per_mtok": args.judge_price[1]},
            "ray": {"batch_size": 100},
        },
    }


def server_bill(records: list[dict], prices: tuple[float, float]) -> float:
    return sum(r["prompt_tokens"] * prices[0] + r["completion_tokens"] * prices[1] for r in records) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--batch-delay-s", type=float, default=1.0)
    parser.add_argument("--teacher-price", type=float, nargs=2, default=(2.5, 10.0), metavar=("IN", "OUT"))
    parser.add_argument("--judge-price", type=float, nargs=2, default=(0.15, 0.6), metavar=("IN", "OUT"))
    parser.add_argument("--discount", type=float, default=0.5)
    args = parser.parse_args()

    import ray

    from cogumi.config import CogumiConfig
    from cogumi.curate.stage import curate_stage
    from tests.support.batch_server import LocalBatchServer
    from tests.support.canned_backend import CannedBackend
    from tests.support.openai_server import call_id

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    server = LocalBatchServer(CannedBackend(words=60), delay_s=args.batch_delay_s).start()
    factor = 1 - args.discount
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prompts = root / "prompts.jsonl"
        write_prompts(prompts, args.prompts)
        for mode in ("online", "batch"):
            server.paid.clear()
            server.batch_paid.clear()
            server.submissions.clear()
            cfg = CogumiConfig.model_validate(config(root, prompts, server.base_url, mode, args))
            t0 = time.perf_counter()
            out = curate_stage(cfg, force=True)
            wall = time.perf_counter() - t0
            s = out["summary"]
            # the server's own records, at the configured prices (the judge's requests carry a JSON schema)
            rate = 1.0 if mode == "online" else factor
            if mode == "online":
                judge_calls = {call_id(b) for b in server.requests if b.get("response_format") is not None}
                teacher_paid = [p for p in server.paid if p["call"] not in judge_calls]
                judge_paid = [p for p in server.paid if p["call"] in judge_calls]
            else:
                teacher_paid = [p for p in server.batch_paid if not p["structured"]]
                judge_paid = [p for p in server.batch_paid if p["structured"]]
            tp, jp = args.teacher_price, args.judge_price
            results[mode] = {
                "rows_ok": s["rows"]["ok"], "rows_input": s["rows"]["input"], "report_usd": s["cost_total_usd"],
                "server_bill_usd": round(server_bill(teacher_paid, (tp[0] * rate, tp[1] * rate))
                                         + server_bill(judge_paid, (jp[0] * rate, jp[1] * rate)), 6),
                "online_equivalent_usd": s["cost_total_online_equivalent_usd"],
                "by_who_usd": {w: round(c.get("usd", 0.0), 6) for w, c in s["cost"].items()},
                "paid_requests": len(teacher_paid) + len(judge_paid), "batches": len(server.submissions),
                "wall_s": round(wall, 1)}
            server.requests.clear()
    server.stop()
    ray.shutdown()
    print(json.dumps({"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                                 f"{os.cpu_count()} CPUs", "prompts": args.prompts,
                      "batch_delay_s": args.batch_delay_s, "teacher_price": args.teacher_price,
                      "judge_price": args.judge_price, "discount": args.discount, "results": results}, indent=2))


if __name__ == "__main__":
    main()
