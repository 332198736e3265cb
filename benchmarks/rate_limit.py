"""Cluster-wide rate limit: 4 Ray workers against a local HTTP server with an RPM cap.

Usage: python benchmarks/rate_limit.py [--rpm 600] [--seconds 30] [--workers 4] [--headroom 0.98]

A tiny OpenAI-compatible server (uvicorn, fixed answer, records the arrival time
of every request) runs in this process. Four Ray tasks each send chat requests
through :class:`cogumi.endpoints.metered.MeteredEndpoint` (the real openai client,
no response cache) sharing the named limiter actor. Reported: the achieved rate
as a fraction of the cap (goal >= 90 %) and the most requests the server saw in
any window holding 60 requests' worth of the cap (goal: never above 60), and in
any one second. Each worker runs 4 threads, like a teacher actor's ``concurrency``.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time

from fastapi import FastAPI, Request


def serve(arrivals: list[float]):
    import uvicorn

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        arrivals.append(time.time())
        await request.body()
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "cap",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1"


def worker(limiter, base_url: str, seconds: float, idx: int, threads: int = 4) -> int:
    from cogumi.config_base import ModelConfig
    from cogumi.endpoints.metered import MeteredEndpoint
    from cogumi.endpoints.config import RetryConfig
    from cogumi.endpoints.limiter import RemoteLimiter
    from cogumi.models.inference import SamplingParams

    ep = MeteredEndpoint("capped", ModelConfig(backend="openai", base_url=base_url, model="cap"), 0.0, 0.0,
                         RetryConfig(), RemoteLimiter(limiter), cache=None)
    end = time.time() + seconds

    def loop(t: int) -> int:
        sent = 0
        while time.time() < end:
            ep.chat([{"role": "user", "content": f"w{idx}.{t} #{sent}"}], SamplingParams(max_tokens=1))
            sent += 1
        return sent

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:  # like a teacher actor's `concurrency` threads
        return sum(pool.map(loop, range(threads)))


def max_in_window(times: list[float], window: float) -> int:
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--headroom", type=float, default=0.98,
                    help="curate.rate_headroom: fraction of the cap the limiter books (1.0 = book the cap exactly)")
    args = ap.parse_args()

    import ray

    from cogumi.endpoints.limiter import get_limiter

    arrivals: list[float] = []
    server, url = serve(arrivals)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    limiter = get_limiter("cogumi-bench-limiter")
    ray.get(limiter.configure.remote("capped", args.rpm * args.headroom, 10**9))
    task = ray.remote(num_cpus=0.25)(worker)
    ray.get([task.remote(limiter, url, 1.0, i) for i in range(args.workers)])  # warm-up (imports)
    arrivals.clear()
    t0 = time.time()
    sent = ray.get([task.remote(limiter, url, args.seconds, i) for i in range(args.workers)])
    duration = max(arrivals) - min(arrivals)
    cap_per_s = args.rpm / 60.0
    window = 60 / cap_per_s  # 60 requests' worth of time
    report = {
        "workers": args.workers, "rpm_cap": args.rpm, "headroom": args.headroom, "requests": len(arrivals), "per_worker": sent,
        "wall_s": round(time.time() - t0, 2),
        "achieved_rpm": round((len(arrivals) - 1) / duration * 60, 1),
        "achieved_fraction_of_cap": round((len(arrivals) - 1) / duration / cap_per_s, 4),
        "max_in_any_window": max_in_window(arrivals, window), "window_s": window, "allowed_in_window": 60,
        "max_in_any_1s": max_in_window(arrivals, 1.0), "allowed_in_1s": cap_per_s,
        "max_in_any_60s": max_in_window(arrivals, 60.0) if duration >= 60 else None,
    }
    print(json.dumps(report, indent=2))
    ray.shutdown()
    server.should_exit = True


if __name__ == "__main__":
    main()
