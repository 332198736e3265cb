"""Bounded-concurrency load on the Serve app over loopback: 32 concurrent streams, 500 requests."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONCURRENCY, REQUESTS = 32, 500


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def test_500_streams_at_concurrency_32_without_errors(served, capsys):
    async def one(http: httpx.AsyncClient, sem: asyncio.Semaphore, i: int) -> tuple[float, float, str]:
        async with sem:
            body = {"model": "cogumi/base" if i % 2 else "cogumi", "stream": True, "max_tokens": 4,
                    "temperature": 0, "messages": [{"role": "user", "content": f"Say a word about {i}."}]}
            t0, ttft, text = time.perf_counter(), None, ""
            async with http.stream("POST", "/chat/completions", json=body) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    assert "error" not in chunk, chunk
                    delta = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
                    if delta:
                        ttft = ttft or time.perf_counter() - t0
                        text += delta
            return time.perf_counter() - t0, ttft or 0.0, text

    async def run():
        sem = asyncio.Semaphore(CONCURRENCY)
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=served.v1, limits=limits, timeout=600,
                                     headers={"Authorization": f"Bearer {served.key}"}) as http:
            t0 = time.perf_counter()
            results = await asyncio.gather(*[one(http, sem, i) for i in range(REQUESTS)], return_exceptions=True)
            return results, time.perf_counter() - t0

    results, wall = asyncio.run(run())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    lat = [r[0] for r in results]
    ttft = [r[1] for r in results]
    report = {"requests": REQUESTS, "concurrency": CONCURRENCY, "errors": 0, "wall_s": round(wall, 1),
              "p50_s": round(statistics.median(lat), 3), "p99_s": round(_pct(lat, 99), 3),
              "ttft_p50_s": round(statistics.median(ttft), 3), "rps": round(REQUESTS / wall, 2)}
    with capsys.disabled():
        print("\nserve load test:", json.dumps(report))
    assert all(r[2] for r in results)  # every stream carried text
