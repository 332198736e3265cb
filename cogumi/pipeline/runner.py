"""Run stages in order with progress, skipping finished ones and stopping at the first failure.

Each stage is a plain function ``(cfg, force) -> summary`` owned by its phase; it
decides skip/resume from its own manifest and returns ``{"skipped": bool, ...}``.
The runner only sequences them, shows progress, times them and reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cogumi.config import CogumiConfig
from cogumi.errors import CogumiError

StageFn = Callable[[CogumiConfig, bool], dict[str, Any]]
GateFn = Callable[[CogumiConfig], tuple[bool, str]]


def always(cfg: CogumiConfig) -> tuple[bool, str]:
    """Gate that always runs the stage."""
    return True, ""


@dataclass
class PipelineStage:
    """One step of the pipeline: a name, what it does, its function and a gate."""

    name: str
    title: str
    run: StageFn
    gate: GateFn = always


@dataclass
class StageOutcome:
    """What happened to one stage in this pipeline run."""

    name: str
    status: str  # ran | skipped | gated | failed
    seconds: float
    detail: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


def run_stages(cfg: CogumiConfig, stages: list[PipelineStage], force: set[str] | None = None,
               only: set[str] | None = None, console: Console | None = None,
               outcomes: list[StageOutcome] | None = None) -> list[StageOutcome]:
    """Run ``stages`` in order.

    Once a stage has really run (not skipped), every later stage is forced too: its
    inputs may have changed even where its own manifest does not record them.

    Args:
        force: stage names to rerun even when their manifests match ("all" forces every stage).
        only: run just these stages (the others are not touched).
        console: where progress goes (stderr console by default).
        outcomes: a list to append to as stages end (still filled when a stage raises).

    Returns:
        One outcome per stage. Stops at the first failure, after recording it.

    Raises:
        CogumiError: re-raised from the failing stage, prefixed with its name.
    """
    console = console or Console(stderr=True)
    force = force or set()
    outcomes = [] if outcomes is None else outcomes
    upstream_ran = False
    chosen = [s for s in stages if only is None or s.name in only]
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[note]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("pipeline", total=len(chosen), note="")
        for stage in chosen:
            task = progress.add_task(f"{stage.name}: {stage.title}", total=1, note="")
            t0 = time.perf_counter()
            enabled, why = stage.gate(cfg)
            if not enabled:
                outcomes.append(StageOutcome(stage.name, "gated", 0.0, why))
                progress.update(task, completed=1, note=f"not needed: {why}")
                progress.advance(overall)
                continue
            forced = stage.name in force or "all" in force or upstream_ran
            try:
                summary = stage.run(cfg, forced) or {}
            except CogumiError as exc:
                outcomes.append(StageOutcome(stage.name, "failed", time.perf_counter() - t0, str(exc)))
                progress.update(task, note="[red]failed")
                raise type(exc)(f"stage '{stage.name}' failed: {exc.what}", exc.where, exc.fix) from None
            seconds = time.perf_counter() - t0
            status = "skipped" if summary.get("skipped") else "ran"
            upstream_ran = upstream_ran or status == "ran"
            outcomes.append(StageOutcome(stage.name, status, seconds, summary.get("degraded", ""), summary))
            progress.update(task, completed=1, note="up to date" if status == "skipped" else f"done in {seconds:.0f}s")
            progress.advance(overall)
    return outcomes
