"""Thin Ray Data adapter: run a row step (a pure class over ``list[dict]``) on an actor pool.

A step is any class constructed from keyword arguments whose instances are
callable on a list of row dicts (and optionally have ``close()``). With
``evaluate.ray.enabled: false`` the same step runs in this process.
"""

from __future__ import annotations

import math
from typing import Any

from cogumi.evaluate.config import RayConfig


class RowsUDF:
    """Ray Data actor holding one step instance (one model) for its lifetime."""

    def __init__(self, step_cls: type, kwargs: dict[str, Any]):
        self.step = step_cls(**kwargs)

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        rows = [_clean(r) for r in batch.to_dict("records")]
        return pd.DataFrame(self.step(rows))


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """pandas turns missing numbers into NaN; give them back as None."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def init_ray(address: str | None) -> None:
    """Join ``address`` (or RAY_ADDRESS), or start a local Ray; no progress bars."""
    from cogumi.raycluster import connect

    connect(address, log_to_driver=False)
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def map_rows(rows: list[dict[str, Any]], step_cls: type, kwargs: dict[str, Any], rcfg: RayConfig, *,
             local: bool) -> list[dict[str, Any]]:
    """Run ``step_cls(**kwargs)`` over ``rows``.

    Args:
        local: True for a step holding the local model (sized by ``local_*``), False for
            HTTP endpoints (``remote_*``).

    Returns:
        The output rows (order not guaranteed under Ray; key them by ``id``).
    """
    if not rows:
        return []
    if not rcfg.enabled:
        step = step_cls(**kwargs)
        try:
            return step(list(rows))
        finally:
            if hasattr(step, "close"):
                step.close()
    import ray.data

    init_ray(rcfg.address)
    workers = rcfg.local_workers if local else rcfg.remote_workers
    workers = max(1, min(workers, math.ceil(len(rows) / rcfg.batch_size)))
    ds = ray.data.from_items(list(rows)).map_batches(
        RowsUDF, batch_format="pandas", batch_size=rcfg.batch_size,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=rcfg.local_num_cpus if local else rcfg.remote_num_cpus,
        num_gpus=rcfg.local_num_gpus if local else 0,
        fn_constructor_kwargs={"step_cls": step_cls, "kwargs": kwargs})
    return [_clean(dict(r)) for r in ds.take_all()]


def method(rcfg: RayConfig, local: bool) -> str:
    """How a step was run, for the manifest."""
    if not rcfg.enabled:
        return "in process"
    if local:
        return f"Ray Data actor pool: {rcfg.local_workers} x {rcfg.local_num_cpus:g} CPU / {rcfg.local_num_gpus:g} GPU"
    return f"Ray Data actor pool: {rcfg.remote_workers} x {rcfg.remote_num_cpus:g} CPU, {rcfg.threads} threads each"
