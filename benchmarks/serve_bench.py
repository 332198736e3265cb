"""Serving benchmark: continuous batching vs llama.cpp's servers, router overhead, adapter switch.

    python benchmarks/serve_bench.py                 # prints JSON, writes the batching section of BENCHMARKS.md
    python benchmarks/serve_bench.py --no-write      # print only
    python benchmarks/serve_bench.py --cpp-server /work/build-llama-server/build/bin/llama-server

One run, one machine, same GGUF (embedded SmolLM2-135M), prompts, ``max_tokens``
(64), greedy, and the same llama.cpp thread count (``--threads``, default all cores):

1. Router overhead: p50 latency of 1-token answers sent (a) straight to the
   ``BaseModel`` deployment handle, (b) through HTTP -> proxy -> ``Router`` ->
   ``BaseModel`` (model ``cogumi/base``), (c) HTTP -> proxy -> ``Router`` alone
   (``GET /v1/models``, no model call), interleaved; (d) the routing decision as the
   router reports it. Goal: (b) - (a) <= 5 ms.
2. Adapter switch: p50 ``switch_ms`` while requests alternate between two LoRAs.
3. Aggregate completion tokens/s at concurrency 1 and 8 of: the Cogumi app with one
   ``BaseModel`` replica, batching on (``serve.batching``) and off;
   ``python -m llama_cpp.server``; llama.cpp's C++ ``llama-server`` (built from the
   sources vendored in the llama-cpp-python sdist; parallel slots = concurrency) when
   ``--cpp-server`` is given. Goals at concurrency 8: batching on >= 2.5x off and
   >= 1.0x llama-server; at concurrency 1: on >= 0.9x off.
4. Mixed adapters: tokens/s at concurrency 8 with requests spread over base, alpha
   and beta through the ``Modifiers`` replica (batched in turns per adapter).
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


async def throughput(base_url: str, model: str | list[str], concurrency: int, n: int, max_tokens: int) -> dict:
    """Aggregate completion tokens/s of ``n`` chat requests at ``concurrency`` (a list of models: round-robin)."""
    sem = asyncio.Semaphore(concurrency)
    models = [model] if isinstance(model, str) else model

    async def one(http: httpx.AsyncClient, i: int) -> int:
        async with sem:
            r = await http.post("/chat/completions", json={
                "model": models[i % len(models)], "max_tokens": max_tokens, "temperature": 0, "seed": 0,
                "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]})
            r.raise_for_status()
            return int(r.json()["usage"]["completion_tokens"])

    async with httpx.AsyncClient(base_url=base_url, timeout=900,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        await one(http, 0)  # warm-up
        t0 = time.perf_counter()
        tokens = await asyncio.gather(*[one(http, i) for i in range(n)])
        wall = time.perf_counter() - t0
    result = {"requests": n, "tokens": sum(tokens), "wall_s": round(wall, 2), "tok_s": round(sum(tokens) / wall, 2)}
    print(f"{base_url} {model} c={concurrency}: {result} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    return result


def bench_cogumi(args, lora_a: Path, lora_b: Path, batching: bool, extras: bool) -> dict:
    """One Cogumi app (1 base replica, ``args.threads`` threads); overhead/switch/mixed only when ``extras``."""
    import ray
    from ray import serve

    from cogumi.models.inference import SamplingParams
    from cogumi.serve.config import ServeConfig
    from cogumi.serve.deployments import APP_NAME, build_app
    from cogumi.serve.worker import gen_request

    tag = "on" if batching else "off"
    # Ray starts its workers at nice 15; the other servers here run at 0. Same priority for all on a shared machine.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    port = free_port()
    cfg = ServeConfig.model_validate({
        "auth": "open-local", "modifiers": {"alpha": str(lora_a), "beta": str(lora_b)},
        "base": {"n_ctx": 1024, "logits_all": True}, "max_tokens_limit": 512,
        "batching": {"enabled": batching, "slots": 8},
        "router_deployment": {"num_cpus": 0.1},
        "base_deployment": {"num_cpus": 1.0, "n_threads": args.threads, "max_ongoing_requests": 32},
        "modifier_deployment": {"num_cpus": 0.1, "n_threads": args.threads, "max_ongoing_requests": 32}})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(cfg, environ={}), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{port}/v1"
    out: dict = {}
    try:
        if extras:
            handle = serve.get_deployment_handle("BaseModel", APP_NAME)
            http = httpx.Client(base_url=url, timeout=300)
            msgs = [{"role": "user", "content": "Say yes."}]
            req = gen_request("chat", SamplingParams(max_tokens=1, temperature=0), msgs)
            direct, routed, ingress, decide = [], [], [], []
            for i in range(args.overhead_calls + 3):
                t0 = time.perf_counter()
                handle.generate.remote(dict(req)).result()
                d = time.perf_counter() - t0
                t0 = time.perf_counter()
                r = http.post("/chat/completions", json={"model": "cogumi/base", "messages": msgs, "max_tokens": 1,
                                                         "temperature": 0})
                r.raise_for_status()
                rt = time.perf_counter() - t0
                t0 = time.perf_counter()
                http.get("/models").raise_for_status()
                ing = time.perf_counter() - t0
                auto = http.post("/chat/completions", json={"model": "cogumi", "messages": msgs, "max_tokens": 1,
                                                            "temperature": 0}).json()
                if i >= 3:  # warm-up done
                    direct.append(d * 1000)
                    routed.append(rt * 1000)
                    ingress.append(ing * 1000)
                    decide.append(auto["cogumi"]["latency_ms"]["route"])
            out["router_overhead"] = {
                "direct_handle_p50_ms": round(p50(direct), 2), "routed_http_p50_ms": round(p50(routed), 2),
                "proxy_ingress_only_p50_ms": round(p50(ingress), 2),
                "overhead_p50_ms": round(p50(routed) - p50(direct), 2),
                "route_decision_p50_ms": round(p50(decide), 3), "calls": len(direct)}
            switches = []
            for i in range(args.switch_calls + 2):
                name = "alpha" if i % 2 else "beta"
                r = http.post("/chat/completions", json={"model": f"cogumi/{name}", "messages": msgs,
                                                         "max_tokens": 1})
                r.raise_for_status()
                if i >= 2:
                    switches.append(_switch_ms(r.json()))
            out["adapter_switch"] = {"switch_p50_ms": round(p50(switches), 3),
                                     "switch_max_ms": round(max(switches), 3), "calls": len(switches)}
        for c in (1, 8):
            out[f"cogumi_{tag}_c{c}"] = asyncio.run(throughput(url, "cogumi/base", c, args.requests[c],
                                                                args.max_tokens))
        if extras:
            out[f"cogumi_{tag}_mixed_c8"] = asyncio.run(throughput(
                url, ["cogumi/alpha", "cogumi/beta", "cogumi/alpha", "cogumi/beta"], 8, args.requests[8],
                args.max_tokens))
            out[f"cogumi_{tag}_one_adapter_c8"] = asyncio.run(throughput(url, "cogumi/alpha", 8, args.requests[8],
                                                                         args.max_tokens))
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
                             "--n_threads", str(args.threads), "--n_ctx", "1024", "--model_alias", "base"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        url = f"http://127.0.0.1:{port}/v1"
        return {f"llama_cpp_python_c{c}": asyncio.run(throughput(url, "base", c, args.requests[c], args.max_tokens))
                for c in (1, 8)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def bench_cpp_server(args, gguf: Path) -> dict:
    """llama.cpp's own ``llama-server``, started once per concurrency with that many parallel slots."""
    out = {}
    for c in (1, 8):
        port = free_port()
        cmd = [str(args.cpp_server), "-m", str(gguf), "--port", str(port), "-t", str(args.threads),
               "-tb", str(args.threads), "-np", str(c), "-c", str(1024 * c), "--no-webui", "-a", "base"]
        cmd += list(args.cpp_flags)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
            out[f"llama_server_cpp_c{c}"] = asyncio.run(throughput(f"http://127.0.0.1:{port}/v1", "base", c,
                                                                   args.requests[c], args.max_tokens))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    out["llama_server_cpp_cmd"] = " ".join(["llama-server", "-m", "<gguf>", "--port", "<port>"] + cmd[5:])
    return out


def _machine() -> str:
    """CPU count and model (from /proc/cpuinfo where there is one)."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = f" ({names[0]})" if names else ""
    return f"{os.cpu_count()} vCPU{model}, {sys.platform}"


def _ratio(result: dict, a: str, b: str) -> float | None:
    if a in result and b in result and result[b]["tok_s"]:
        return round(result[a]["tok_s"] / result[b]["tok_s"], 2)
    return None


def write_section(path: Path, result: dict, command: str) -> None:
    """Replace (or add) the batching section of BENCHMARKS.md (the issue-8 serve section stays as it is)."""
    o, s = result["router_overhead"], result["adapter_switch"]

    def tok(key: str) -> str:
        return str(result[key]["tok_s"]) if key in result else "not run"

    rows = "\n".join(f"| {c} | {tok(f'cogumi_on_c{c}')} | {tok(f'cogumi_off_c{c}')} | "
                     f"{tok(f'llama_cpp_python_c{c}')} | {tok(f'llama_server_cpp_c{c}')} |" for c in (1, 8))
    g = result["goals"]
    section = f"""<!-- serve-batching:begin -->
## Serving engine: continuous batching on llama.cpp (issue 14)

Command: `{command}` — run {result['when']} on {result['machine']} (1-min load average {result['load']} at start, {result.get('load_end')} at end;
a shared, noisy VM: other sessions' jobs ran beside it). Same GGUF (embedded SmolLM2-135M), prompts,
greedy, {result['max_tokens']} max tokens, {result['threads']} llama.cpp threads and nice 0 everywhere; Cogumi = one
`BaseModel` replica reached through HTTP → proxy → `Router` (model `cogumi/base`).

Aggregate completion tokens/s:

| concurrency | Cogumi batching on | Cogumi batching off | llama_cpp.server (Python) | llama-server (C++, slots = concurrency) |
|---|---|---|---|---|
{rows}

| goal | measured | met |
|---|---|---|
| c=8: batching on ≥ 2.5× off | {g['on_vs_off_c8']}× | {g['on_vs_off_c8_met']} |
| c=8: batching on ≥ 1.0× llama-server (C++) | {g['on_vs_cpp_c8']}× | {g['on_vs_cpp_c8_met']} |
| c=1: batching on ≥ 0.9× off | {g['on_vs_off_c1']}× | {g['on_vs_off_c1_met']} |
| router overhead (routed − direct, p50) ≤ 5 ms | {o['overhead_p50_ms']} ms | {g['overhead_met']} |

Router path (1-token answers, p50): direct `BaseModel` handle {o['direct_handle_p50_ms']} ms; HTTP → proxy →
`Router` alone (`GET /v1/models`) {o['proxy_ingress_only_p50_ms']} ms; HTTP → proxy → `Router` → `BaseModel`
{o['routed_http_p50_ms']} ms; routing decision {o['route_decision_p50_ms']} ms. Adapter switch p50 / max:
{s['switch_p50_ms']} / {s['switch_max_ms']} ms.

Mixed adapters (`Modifiers` replica, batching on, c=8): one adapter (`alpha`) {tok('cogumi_on_one_adapter_c8')} tok/s;
requests alternating `alpha`/`beta` {tok('cogumi_on_mixed_c8')} tok/s (each adapter group decodes in its own
turn, so two groups take two decode steps per round).

{result['note']}
<!-- serve-batching:end -->"""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if "<!-- serve-batching:begin -->" in text:
        head, rest = text.split("<!-- serve-batching:begin -->", 1)
        text = head + section + rest.split("<!-- serve-batching:end -->", 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="llama.cpp threads for every server")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--overhead-calls", type=int, default=30)
    ap.add_argument("--switch-calls", type=int, default=20)
    ap.add_argument("--c1-requests", type=int, default=4)
    ap.add_argument("--c8-requests", type=int, default=24)
    ap.add_argument("--cpp-server", type=Path, default=None, help="llama.cpp's llama-server binary")
    ap.add_argument("--cpp-flags", nargs="*", default=None,
                    help="extra llama-server flags (default: --no-repack where Cogumi turns llama.cpp's extra "
                         "buffer types off, e.g. on AMX CPUs where they crash)")
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    args.requests = {1: args.c1_requests, 8: args.c8_requests}
    if args.cpp_flags is None:
        from cogumi.models.inference.llamacpp_backend import _extra_buffers_safe

        args.cpp_flags = [] if _extra_buffers_safe() else ["--no-repack"]  # same weights layout as Cogumi's

    from cogumi.models.embedded import embedded_gguf_path
    from tests.unit.serve.gguf_lora import write_gguf_lora

    gguf = embedded_gguf_path()
    tmp = Path(tempfile.mkdtemp(prefix="cogumi-bench-"))
    lora_a = write_gguf_lora(gguf, tmp / "alpha.gguf", rank=8, scale=0.05, seed=1)
    lora_b = write_gguf_lora(gguf, tmp / "beta.gguf", rank=8, scale=0.05, seed=2)
    load = os.getloadavg()[0]
    result = {"when": datetime.now().strftime("%Y-%m-%d %H:%M"), "load": round(load, 2),
              "machine": _machine(), "max_tokens": args.max_tokens,
              "threads": args.threads}
    result |= bench_cogumi(args, lora_a, lora_b, batching=True, extras=True)
    result |= bench_cogumi(args, lora_a, lora_b, batching=False, extras=False)
    result |= bench_llama_server(args, gguf)
    if args.cpp_server:
        result |= bench_cpp_server(args, gguf)
    on_off8, on_off1 = _ratio(result, "cogumi_on_c8", "cogumi_off_c8"), _ratio(result, "cogumi_on_c1", "cogumi_off_c1")
    on_cpp8 = _ratio(result, "cogumi_on_c8", "llama_server_cpp_c8")
    result["goals"] = {
        "on_vs_off_c8": on_off8, "on_vs_off_c8_met": "yes" if (on_off8 or 0) >= 2.5 else "no",
        "on_vs_cpp_c8": on_cpp8, "on_vs_cpp_c8_met": "not run" if on_cpp8 is None else
        ("yes" if on_cpp8 >= 1.0 else "no"),
        "on_vs_off_c1": on_off1, "on_vs_off_c1_met": "yes" if (on_off1 or 0) >= 0.9 else "no",
        "overhead_met": "yes" if result["router_overhead"]["overhead_p50_ms"] <= 5 else "no"}
    result["load_end"] = round(os.getloadavg()[0], 2)
    result["note"] = (f"Requests: {args.c1_requests} at c=1, {args.c8_requests} at c=8 (after one warm-up each). "
                      "Cogumi batching on: `serve.batching` slots 8, one llama.cpp context decoding every live "
                      "sequence per step; off: llama-cpp-python one request at a time. "
                      + (f"llama-server: `{result.get('llama_server_cpp_cmd')}`." if args.cpp_server else
                         "llama-server (C++) was not run in this invocation (no --cpp-server)."))
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write_section(args.out, result, " ".join(["python", "benchmarks/serve_bench.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
