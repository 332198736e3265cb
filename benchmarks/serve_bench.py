"""Serving benchmark: router overhead, adapter switch latency, throughput vs llama-cpp-python's server.

    python benchmarks/serve_bench.py                 # prints JSON, updates the serve section of BENCHMARKS.md
    python benchmarks/serve_bench.py --no-write      # print only

One run, one machine, interleaved where it matters:

1. Router overhead: p50 latency of 1-token answers sent (a) straight to the
   ``BaseModel`` deployment handle and (b) through HTTP -> proxy -> ``Router`` ->
   ``BaseModel`` (model ``cogumi/base``), interleaved; (c) the routing decision
   alone as the router reports it (``latency_ms.route``) for auto-routed calls.
   Goal: (b) - (a) <= 5 ms.
2. Adapter switch: p50 ``switch_ms`` the ``Modifiers`` replica reports while
   requests alternate between two GGUF LoRA adapters (random rank-8 adapters made
   for the run; no trained adapters are needed to time a switch). Goal <= 50 ms.
3. Aggregate completion tokens/s at concurrency 1 and 8, same GGUF, same prompts,
   ``max_tokens`` 64, greedy: the Cogumi app (route ``cogumi/base``, 2 base
   replicas x 1 thread) vs ``python -m llama_cpp.server`` (2 threads). Goal at
   concurrency 8: >= 1.5x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROMPTS = ["Explain what a hash map is.", "Write a haiku about autumn.", "List three uses of Python.",
           "Why is the sky blue?", "Describe a cat in two sentences.", "What is recursion?",
           "Give a tip for learning to cook.", "Summarise the water cycle."]
SERVER_SNIPPET = """
import sys
from cogumi.models.inference.llamacpp_backend import _extra_buffers, _extra_buffers_safe
from llama_cpp.server.__main__ import main
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
with _extra_buffers(_extra_buffers_safe()):  # same AMX workaround the Cogumi backend uses
    main()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def p50(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def wait_http(url: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not come up")


async def throughput(base_url: str, model: str, concurrency: int, n: int, max_tokens: int) -> dict:
    """Aggregate completion tokens/s of ``n`` chat requests at ``concurrency``."""
    sem = asyncio.Semaphore(concurrency)

    async def one(http: httpx.AsyncClient, i: int) -> int:
        async with sem:
            r = await http.post("/chat/completions", json={
                "model": model, "max_tokens": max_tokens, "temperature": 0, "seed": 0,
                "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]})
            r.raise_for_status()
            return int(r.json()["usage"]["completion_tokens"])

    async with httpx.AsyncClient(base_url=base_url, timeout=900,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        await one(http, 0)  # warm-up
        t0 = time.perf_counter()
        tokens = await asyncio.gather(*[one(http, i) for i in range(n)])
        wall = time.perf_counter() - t0
    return {"requests": n, "tokens": sum(tokens), "wall_s": round(wall, 2), "tok_s": round(sum(tokens) / wall, 2)}


def bench_cogumi(args, lora_a: Path, lora_b: Path) -> dict:
    import ray
    from ray import serve

    from cogumi.models.inference import SamplingParams
    from cogumi.serve.config import ServeConfig
    from cogumi.serve.deployments import APP_NAME, build_app
    from cogumi.serve.worker import gen_request

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    port = free_port()
    cfg = ServeConfig.model_validate({
        "auth": "open-local", "modifiers": {"alpha": str(lora_a), "beta": str(lora_b)},
        "base": {"n_ctx": 1024, "logits_all": True}, "max_tokens_limit": 512,
        "router_deployment": {"num_cpus": 0.2},
        "base_deployment": {"num_cpus": 0.8, "n_threads": 1, "min_replicas": args.replicas,
                            "max_replicas": args.replicas},
        "modifier_deployment": {"num_cpus": 0.2, "n_threads": 1}})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(cfg, environ={}), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{port}/v1"
    out: dict = {}
    try:
        handle = serve.get_deployment_handle("BaseModel", APP_NAME)
        http = httpx.Client(base_url=url, timeout=300)
        msgs = [{"role": "user", "content": "Say yes."}]
        req = gen_request("chat", SamplingParams(max_tokens=1, temperature=0), msgs)
        direct, routed, decide = [], [], []
        for i in range(args.overhead_calls + 3):
            t0 = time.perf_counter()
            handle.generate.remote(dict(req)).result()
            d = time.perf_counter() - t0
            t0 = time.perf_counter()
            r = http.post("/chat/completions", json={"model": "cogumi/base", "messages": msgs, "max_tokens": 1,
                                                     "temperature": 0})
            r.raise_for_status()
            rt = time.perf_counter() - t0
            auto = http.post("/chat/completions", json={"model": "cogumi", "messages": msgs, "max_tokens": 1,
                                                        "temperature": 0}).json()
            if i >= 3:  # warm-up done
                direct.append(d * 1000)
                routed.append(rt * 1000)
                decide.append(auto["cogumi"]["latency_ms"]["route"])
        out["router_overhead"] = {"direct_handle_p50_ms": round(p50(direct), 2), "routed_http_p50_ms": round(p50(routed), 2),
                                  "overhead_p50_ms": round(p50(routed) - p50(direct), 2),
                                  "route_decision_p50_ms": round(p50(decide), 3), "calls": len(direct)}
        switches = []
        for i in range(args.switch_calls + 2):
            name = "alpha" if i % 2 else "beta"
            r = http.post("/chat/completions", json={"model": f"cogumi/{name}", "messages": msgs, "max_tokens": 1})
            r.raise_for_status()
            if i >= 2:
                switches.append(_switch_ms(r.json()))
        out["adapter_switch"] = {"switch_p50_ms": round(p50(switches), 3), "switch_max_ms": round(max(switches), 3),
                                 "calls": len(switches)}
        for c in (1, 8):
            out[f"cogumi_c{c}"] = asyncio.run(throughput(url, "cogumi/base", c, args.requests[c], args.max_tokens))
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


def _switch_ms(body: dict) -> float:
    """The adapter switch time the Modifiers replica measured (forwarded in ``cogumi.latency_ms``)."""
    return float(body["cogumi"]["latency_ms"]["adapter_switch"])


def bench_llama_server(args, gguf: Path) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SNIPPET, "--model", str(gguf), "--port", str(port),
                             "--n_threads", str(os.cpu_count()), "--n_ctx", "1024", "--model_alias", "base"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        url = f"http://127.0.0.1:{port}/v1"
        return {f"llama_server_c{c}": asyncio.run(throughput(url, "base", c, args.requests[c], args.max_tokens))
                for c in (1, 8)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def write_section(path: Path, result: dict, command: str) -> None:
    """Replace (or add) the serve section of BENCHMARKS.md."""
    o, s = result["router_overhead"], result["adapter_switch"]
    rows = "\n".join(
        f"| {c} | {result[f'cogumi_c{c}']['tok_s']} | {result[f'llama_server_c{c}']['tok_s']} | "
        f"{result[f'ratio_c{c}']}× |" for c in (1, 8))
    section = f"""<!-- serve:begin -->
## Serving: router overhead, adapter switch, throughput (issue 8)

Goals: router overhead ≤ 5 ms (p50, routed vs direct base call), adapter switch ≤ 50 ms,
aggregate tokens/s at concurrency 8 ≥ 1.5× llama-cpp-python's own server.

Command: `{command}` — run {result['when']} on {result['machine']} (load average at start {result['load']}).

| measure | value | goal |
|---|---|---|
| direct `BaseModel` handle call, p50 (1 token) | {o['direct_handle_p50_ms']} ms | |
| HTTP → proxy → `Router` → `BaseModel`, p50 (1 token) | {o['routed_http_p50_ms']} ms | |
| router overhead, p50 difference | {o['overhead_p50_ms']} ms | ≤ 5 ms |
| routing decision alone (cascade, p50) | {o['route_decision_p50_ms']} ms | |
| adapter switch (llama.cpp LoRA, p50 / max) | {s['switch_p50_ms']} / {s['switch_max_ms']} ms | ≤ 50 ms |

| concurrency | Cogumi tok/s | llama_cpp.server tok/s | ratio |
|---|---|---|---|
{rows}

{result['note']}
<!-- serve:end -->"""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if "<!-- serve:begin -->" in text:
        head, rest = text.split("<!-- serve:begin -->", 1)
        text = head + section + rest.split("<!-- serve:end -->", 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=2, help="BaseModel replicas (1 llama.cpp thread each)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--overhead-calls", type=int, default=30)
    ap.add_argument("--switch-calls", type=int, default=20)
    ap.add_argument("--c1-requests", type=int, default=6)
    ap.add_argument("--c8-requests", type=int, default=24)
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    args.requests = {1: args.c1_requests, 8: args.c8_requests}

    from cogumi.models.embedded import embedded_gguf_path
    from tests.unit.serve.gguf_lora import write_gguf_lora

    gguf = embedded_gguf_path()
    tmp = Path(tempfile.mkdtemp(prefix="cogumi-bench-"))
    lora_a = write_gguf_lora(gguf, tmp / "alpha.gguf", rank=8, scale=0.05, seed=1)
    lora_b = write_gguf_lora(gguf, tmp / "beta.gguf", rank=8, scale=0.05, seed=2)
    load = os.getloadavg()[0]
    result = {"when": datetime.now().strftime("%Y-%m-%d %H:%M"), "load": round(load, 2),
              "machine": f"{os.cpu_count()} vCPU, {sys.platform}", "max_tokens": args.max_tokens}
    result |= bench_cogumi(args, lora_a, lora_b)
    result |= bench_llama_server(args, gguf)
    for c in (1, 8):
        result[f"ratio_c{c}"] = round(result[f"cogumi_c{c}"]["tok_s"] / result[f"llama_server_c{c}"]["tok_s"], 2)
    result["note"] = (f"Cogumi: {args.replicas} `BaseModel` replicas × 1 llama.cpp thread, no batched decoding "
                      "(each replica answers one request at a time); llama_cpp.server: one model, "
                      f"{os.cpu_count()} threads, requests serialised. Greedy, {args.max_tokens} max tokens, "
                      "same GGUF (embedded SmolLM2-135M Q4_1) and prompts.")
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write_section(args.out, result, "python benchmarks/serve_bench.py")


if __name__ == "__main__":
    main()
