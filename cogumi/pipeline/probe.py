"""The pipeline's ``serve`` stage: probe the live endpoint through the ``openai`` client and record it.

A handful of prompts (one per domain the run knows) go to ``/v1/chat/completions``, plus
one streamed request for the time to the first token; latencies, routes and answers are
written to ``<run>/serve/`` so the report shows serving figures measured on this run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from cogumi.artifacts import RunDir
from cogumi.config import CogumiConfig
from cogumi.errors import CogumiError

PROBE_PROMPTS = (
    ("code", "Write a Python function that returns the square of a number."),
    ("math", "What is 12 times 7? Answer with the number."),
    ("reasoning", "If all cats are animals and Tom is a cat, is Tom an animal?"),
    ("conversation", "Hi! How are you today?"),
    ("creative", "Write one sentence about the sea."),
    ("science", "Why is the sky blue? One sentence."),
)
STAGE = "serve"


def probe(url: str, api_key: str | None, max_tokens: int) -> dict[str, Any]:
    """Send the probe prompts and one stream to the endpoint at ``url``.

    Raises:
        CogumiError: the endpoint answered none of the probe requests.
    """
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key=api_key or "none", timeout=300, max_retries=0)
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for domain, prompt in PROBE_PROMPTS:
        t0 = time.perf_counter()
        try:
            resp = client.chat.completions.create(model="cogumi", max_tokens=max_tokens, temperature=0,
                                                  messages=[{"role": "user", "content": prompt}])
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, the probe goes on
            errors.append(f"{domain}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        block = (resp.model_extra or {}).get("cogumi") or {}
        rows.append({"domain": domain, "prompt": prompt, "answer": resp.choices[0].message.content,
                     "latency_ms": round((time.perf_counter() - t0) * 1000, 1), "route": block.get("route"),
                     "completion_tokens": resp.usage.completion_tokens if resp.usage else None})
    if not rows:
        raise CogumiError("the served endpoint answered none of the probe requests", url,
                          f"see the replica logs under /tmp/ray/session_latest/logs/serve; errors: {errors[:3]}")
    t0 = time.perf_counter()
    first = None
    for chunk in client.chat.completions.create(model="cogumi", max_tokens=max_tokens, temperature=0, stream=True,
                                                messages=[{"role": "user", "content": PROBE_PROMPTS[0][1]}]):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t0
    lat = [r["latency_ms"] for r in rows]
    routes: dict[str, int] = {}
    for r in rows:
        routes[str(r["route"])] = routes.get(str(r["route"]), 0) + 1
    return {"requests": len(PROBE_PROMPTS), "answered": len(rows), "errors": errors,
            "latency_ms_median": round(statistics.median(lat), 1), "latency_ms_max": max(lat),
            "stream_first_token_ms": round(first * 1000, 1) if first is not None else None,
            "routes": routes, "rows": rows}


def probe_key(cfg: CogumiConfig) -> tuple[str, dict[str, str]]:
    """(config hash, inputs) of the serve probe: the serve section and the stages it serves."""
    run = RunDir.open(cfg.run.root, cfg.run.name)
    inputs = {name: run.stage(name).digest() for name in ("compress.gguf", "modifiers", "router")
              if run.stage(name).finished()}
    return cfg.section_hash("serve"), inputs


def probe_up_to_date(cfg: CogumiConfig) -> bool:
    """True when the last probe was of exactly this serving config and these artifacts."""
    return RunDir.open(cfg.run.root, cfg.run.name).stage(STAGE).can_skip(*probe_key(cfg))


def record_probe(cfg: CogumiConfig, url: str, result: dict[str, Any]) -> str:
    """Write the probe into the ``serve`` stage (manifest metrics + ``report.md``); returns the stage path."""
    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(STAGE)
    with stage.begin(*probe_key(cfg)) as rec:
        rec.metrics.update({k: v for k, v in result.items() if k != "rows"})
        rec.method.update(base=f"{cfg.serve.base.backend}:{cfg.serve.base.model}",
                          adapters=str(cfg.serve.adapters_dir), router=str(cfg.serve.routing.artifact or "built-in"),
                          routing=cfg.serve.routing.mode, probe=f"openai client -> {url}/v1 (sequential)")
        rec.write_json("probe.json", result)
        lines = ["# Serving probe", "", f"Endpoint {url}/v1, {result['answered']}/{result['requests']} answered; "
                 f"median {result['latency_ms_median']} ms, first streamed token "
                 f"{result['stream_first_token_ms']} ms.", "",
                 "| domain | route | latency ms | tokens | answer |", "|---|---|---|---|---|"]
        for r in result["rows"]:
            answer = (r["answer"] or "").replace("\n", " ").replace("|", "\\|")[:80]
            lines.append(f"| {r['domain']} | {r['route']} | {r['latency_ms']} | {r['completion_tokens']} | {answer} |")
        rec.write_text("report.md", "\n".join(lines) + "\n")
    return stage.path
