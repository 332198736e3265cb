"""In-process decode throughput of one serving worker, continuous batching on vs off (issue 14).

No Ray, no HTTP: a :class:`cogumi.serve.worker.ModelWorker` on the embedded SmolLM2 GGUF, greedy
64-token chat answers, requests sent from threads (as Serve's replica threads do). It isolates the
engine from the proxy/router path that ``benchmarks/serve_bench.py`` measures end to end.

    python benchmarks/batch_engine.py --threads 2 --concurrency 1 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from cogumi.config_base import ModelConfig
from cogumi.models.inference import SamplingParams
from cogumi.serve.config import BatchingSettings
from cogumi.serve.worker import ModelWorker, gen_request


def throughput(worker: ModelWorker, concurrency: int, tokens: int, rounds: int) -> float:
    """Aggregate generated tokens per second over ``rounds`` x ``concurrency`` requests."""
    def one(i: int) -> int:
        msgs = [{"role": "user", "content": f"Write a long story about lighthouse keeper number {i} and the sea."}]
        req = gen_request("chat", SamplingParams(max_tokens=tokens, temperature=0.0), msgs)
        return int(worker.generate(req)["usage"]["completion_tokens"])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        generated = sum(pool.map(one, range(rounds * concurrency)))
    return generated / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="requests per concurrent client")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per cell (the median is reported)")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[tuple[str, int], float] = {}
    for mode in ("off", "on"):
        worker = ModelWorker(ModelConfig(n_ctx=1024, n_threads=args.threads), None,
                             BatchingSettings(enabled=mode == "on", slots=max(args.concurrency)))
        try:
            throughput(worker, 1, 8, 1)  # warm-up
            for c in args.concurrency:
                runs = [throughput(worker, c, args.tokens, args.rounds) for _ in range(args.repeats)]
                results[(mode, c)] = statistics.median(runs)
                print(f"batching {mode:3s} c={c}: {results[(mode, c)]:.1f} tok/s (median of {args.repeats})",
                      flush=True)
        finally:
            worker.close()
    for c in args.concurrency:
        print(f"c={c}: batching on / off = {results[('on', c)] / results[('off', c)]:.2f}x")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
