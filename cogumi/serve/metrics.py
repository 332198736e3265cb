"""Request metrics: exported through Ray (``ray.serve.metrics``) and kept as local counters.

Inside a Serve replica the metrics reach Ray's Prometheus exporter with the
deployment/replica tags Serve adds; outside Ray (unit tests) only the local
counters exist. ``snapshot()`` is what ``/ready`` shows to an authenticated caller.
Every label comes from a small fixed set (route templates such as
``/v1/models/{model_id}``, ``unmatched`` for any other path, status codes,
deployed route names), so random paths cannot grow the series.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

LATENCY_BOUNDS_MS: list[float] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]


class ServeMetrics:
    """Counters and a latency histogram for the API.

    Args:
        export: also record through ``ray.serve.metrics`` (only inside a Ray worker).
    """

    def __init__(self, export: bool = False):
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._ray: dict[str, Any] = {}
        if export:
            from ray.serve import metrics

            self._ray = {
                "requests": metrics.Counter("cogumi_requests", "API requests by endpoint, status and route",
                                            tag_keys=("endpoint", "status", "route")),  # type: ignore[arg-type]  # ray annotates tag_keys as tuple[str]
                "latency": metrics.Histogram("cogumi_request_latency_ms", "API request latency (ms)",
                                             boundaries=LATENCY_BOUNDS_MS, tag_keys=("endpoint", "route")),  # type: ignore[arg-type]  # ray annotates tag_keys as tuple[str]
                "tokens": metrics.Counter("cogumi_completion_tokens", "completion tokens served by route",
                                          tag_keys=("route",)),
                "decisions": metrics.Counter("cogumi_route_decisions", "routing decisions by route and reason",
                                             tag_keys=("route", "reason")),  # type: ignore[arg-type]  # ray annotates tag_keys as tuple[str]
            }

    def request(self, endpoint: str, status: int, route: str, latency_ms: float) -> None:
        """One finished API request (``endpoint``: the matched route template, never a raw path)."""
        with self._lock:
            self.counts[f"requests{{endpoint={endpoint},status={status}}}"] += 1
        if self._ray:
            self._ray["requests"].inc(1, {"endpoint": endpoint, "status": str(status), "route": route})
            self._ray["latency"].observe(latency_ms, {"endpoint": endpoint, "route": route})

    def decision(self, route: str, reason: str, completion_tokens: int) -> None:
        """One routed answer."""
        with self._lock:
            self.counts[f"routes{{route={route}}}"] += 1
            self.counts["completion_tokens"] += completion_tokens
        if self._ray:
            self._ray["decisions"].inc(1, {"route": route, "reason": reason.split(",")[0]})
            if completion_tokens:
                self._ray["tokens"].inc(completion_tokens, {"route": route})

    def snapshot(self) -> dict[str, int]:
        """The local counters (this replica only)."""
        with self._lock:
            return dict(self.counts)
