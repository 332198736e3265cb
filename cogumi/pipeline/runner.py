"""Run stages in order with progress, skipping finished ones and stopping at the first failure.

Each stage is a plain function ``(cfg, force) -> StageResult`` wrapping its phase's entry
function; the phase decides skip/resume from its own manifest (see
:class:`~cogumi.pipeline.contracts.StageResult`).
The runner only sequences them, shows progress, times them and reports.

Progress is printed as plain lines (one when a stage starts, one when it ends, and a
heartbeat while a long stage runs when the console is not a terminal), so a log file
shows what is happening; a terminal also gets the live bar.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cogumi.config import CogumiConfig
from cogumi.errors import CogumiError
from cogumi.pipeline.contracts import STATUSES, StageResult

__all__ = ["STATUSES", "PipelineStage", "StageOutcome", "StageResult", "run_stages"]

StageFn = Callable[[CogumiConfig, bool], StageResult]
GateFn = Callable[[CogumiConfig], tuple[bool, str]]
HEARTBEAT_S = 60.0
MARKS = {"ran": "✓", "skipped": "✓", "degraded": "⚠", "rejected": "⚠", "gated": "·", "failed": "✗"}


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
    """What happened to one stage in this pipeline run (``status`` is a key of :data:`STATUSES`)."""

    name: str
    status: str
    seconds: float
    detail: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    result: StageResult | None = None


def manifest_status(manifest: Any) -> str:
    """The status of a stage from its manifest alone (for stages the pipeline did not run).

    A finished manifest may name its status in ``metrics["status"]`` (e.g. ``degraded``).
    """
    if manifest.status == "failed":
        return "failed"
    if manifest.status != "finished":
        return "unfinished"
    named = manifest.metrics.get("status")
    return named if named in STATUSES else "ran"


def run_stages(cfg: CogumiConfig, stages: list[PipelineStage], force: set[str] | None = None,
               only: set[str] | None = None, console: Console | None = None,
               outcomes: list[StageOutcome] | None = None, heartbeat_s: float = HEARTBEAT_S) -> list[StageOutcome]:
    """Run ``stages`` in order.

    Once a stage has really run (not skipped), every later stage is forced too: its
    inputs may have changed even where its own manifest does not record them.

    Args:
        force: stage names to rerun even when their manifests match ("all" forces every stage).
        only: run just these stages (the others are not touched).
        console: where progress goes (stderr console by default).
        outcomes: a list to append to as stages end (still filled when a stage raises).
        heartbeat_s: seconds between "still running" lines when the console is not a terminal.

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
    with _bar(console, len(chosen)) as advance:
        for stage in chosen:
            t0 = time.perf_counter()
            enabled, why = stage.gate(cfg)
            if not enabled:
                outcomes.append(StageOutcome(stage.name, "gated", 0.0, why))
                _say(console, end_line(outcomes[-1]))
                advance()
                continue
            _say(console, f"▶ {stage.name}: {stage.title}")
            forced = stage.name in force or "all" in force or upstream_ran
            try:
                with _heartbeat(console, stage.name, heartbeat_s, enabled=not console.is_terminal):
                    result = stage.run(cfg, forced)
            except CogumiError as exc:
                outcomes.append(StageOutcome(stage.name, "failed", time.perf_counter() - t0, str(exc)))
                _say(console, end_line(outcomes[-1]))
                raise type(exc)(f"stage '{stage.name}' failed: {exc.what}", exc.where, exc.fix) from None
            if not isinstance(result, StageResult):
                raise TypeError(f"stage '{stage.name}' returned {type(result).__name__}, not a StageResult")
            status = result.final_status()
            upstream_ran = upstream_ran or status != "skipped"
            outcomes.append(StageOutcome(stage.name, status, time.perf_counter() - t0, result.degraded,
                                         result.summary, result))
            _say(console, end_line(outcomes[-1]))
            advance()
    return outcomes


def end_line(o: StageOutcome) -> str:
    """The one line printed when a stage ends: status, time, and its key figure or note."""
    mark = MARKS.get(o.status, "·")
    if o.status == "gated":
        return f"{mark} {o.name} gated: {o.detail}"
    if o.status == "failed":
        return f"{mark} {o.name} failed after {o.seconds:.0f}s: {o.detail}"
    head = f"{mark} {o.name} skipped (up to date)" if o.status == "skipped" else \
        f"{mark} {o.name} {o.status} in {o.seconds:.0f}s"
    return " · ".join(n for n in (head, note(o)) if n)


def note(o: StageOutcome) -> str:
    """What is said beside a stage's status everywhere: its key figure and its gate/fallback/error note."""
    figure = o.result.headline if o.result is not None and o.result.headline else key_figure(o.name, o.summary)
    return " · ".join(n for n in (figure, o.detail if o.detail not in figure else "") if n)


# ---------------------------------------------------------------- key figures


def key_figure(name: str, summary: dict[str, Any]) -> str:
    """One short figure that says what a stage produced (``summary["headline"]`` when it gives one).

    Never raises: a summary of an unexpected shape gives an empty string.
    """
    if summary.get("headline"):
        return str(summary["headline"])
    fn = KEY_FIGURES.get(name) or (KEY_FIGURES["train"] if name.startswith("train") else None)
    if fn is None:
        return ""
    try:
        return fn(summary)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return ""


def _curate(s: dict[str, Any]) -> str:
    rows = s["summary"]["rows"]
    return f"kept {rows['ok']} of {rows['input']} rows"


def _train(s: dict[str, Any]) -> str:
    m = s["metrics"]
    loss = m.get("best_eval_loss")
    best = f"best eval_loss {loss:.3f} (step {m.get('best_step')})" if loss is not None else "no eval_loss"
    return f"{best} · {m.get('train_examples')} train / {m.get('val_examples')} val examples"


def _benchmark(s: dict[str, Any]) -> str:
    from cogumi.evaluate.report import flat_metrics

    flat = flat_metrics(s["results"])
    if not flat:
        return "no metric measured"
    name, m = next(iter(flat.items()))
    value = f"{m['value']:.2f}" if "perplexity" in name else f"{100 * m['value']:.1f}%"
    return f"{name} {value} (n={m['n']})" + (f" · {len(flat) - 1} more metrics" if len(flat) > 1 else "")


def _compare(s: dict[str, Any]) -> str:
    r = s["results"]
    return f"score {r['summary']['overall']['score']} · Phase 1C: {r['decision']['phase_1c']}"


def _distill(s: dict[str, Any]) -> str:
    return f"{s['summary']['examples']} distilled examples"


def _compress(s: dict[str, Any]) -> str:
    rows = s["steps"]["report"]["rows"]
    served = [r for r in rows if r.get("served")] or [r for r in rows if r["step"] == "gguf" and r.get("gate") != "fail"]
    if not served:
        return f"quality gate: {s['steps']['report'].get('worst_gate')}"
    r = min(served, key=lambda r: r["bytes"])
    ppl = f", ppl {r['ppl']:.2f}" if r.get("ppl") is not None else ""
    return f"serves {r['artifact']} {r['bytes'] / 1e6:,.1f} MB{ppl}"


def _modifiers(s: dict[str, Any]) -> str:
    adapters = s["metrics"]["adapters"]
    return f"{len(adapters)} adapter(s): {', '.join(adapters)}" if adapters else "no adapter trained"


def _router(s: dict[str, Any]) -> str:
    if s.get("degraded"):
        return ""  # the degraded note says why the built-in router serves
    m = s["metrics"]
    return f"test accuracy {m['cascade']['test_accuracy']:.1%}, ECE {m['cascade']['test_ece']:.3f}"


KEY_FIGURES: dict[str, Callable[[dict[str, Any]], str]] = {
    "curate": _curate, "train": _train, "benchmark": _benchmark, "compare": _compare, "distill": _distill,
    "compress": _compress, "modifiers": _modifiers, "router": _router}


# ---------------------------------------------------------------- console plumbing


def _say(console: Console, line: str) -> None:
    console.print(escape(line), highlight=False, soft_wrap=True)
    with contextlib.suppress(AttributeError, ValueError, OSError):
        console.file.flush()


@contextlib.contextmanager
def _bar(console: Console, total: int) -> Iterator[Callable[[], None]]:
    """A live overall bar on a terminal (the lines print above it); nothing otherwise."""
    if not console.is_terminal:
        yield lambda: None
        return
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("pipeline", total=total)
        yield lambda: progress.advance(task)


@contextlib.contextmanager
def _heartbeat(console: Console, name: str, every_s: float, enabled: bool) -> Iterator[None]:
    """Print ``… <name> still running (3m)`` every ``every_s`` seconds from a daemon thread."""
    if not enabled:
        yield
        return
    stop = threading.Event()
    t0 = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every_s):
            _say(console, f"… {name} still running ({_elapsed(time.perf_counter() - t0)})")

    thread = threading.Thread(target=beat, name=f"heartbeat-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1.0)


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m" if minutes and not secs else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
