"""``cogumi pipeline``: every phase in order on Ray, one report, then the served endpoint."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Annotated, Optional

import typer
import yaml

from cogumi.cli.options import ConfigOpt, SetOpt, console, err_console, load, user_errors
from cogumi.errors import CogumiError
from cogumi.pipeline.stages import RUN_CONFIG
from cogumi.raycluster import connect


@user_errors
def pipeline_cmd(config: ConfigOpt = None, set_: SetOpt = None,
                 force: Annotated[Optional[list[str]], typer.Option(
                     "--force", help="rerun this stage even if up to date (repeatable; 'all' for every stage)")]
                 = None,
                 only: Annotated[Optional[list[str]], typer.Option(
                     "--only", help="run just this stage (repeatable); default: pipeline.stages")] = None,
                 serve: Annotated[Optional[bool], typer.Option(
                     "--serve/--no-serve", help="keep the endpoint up at the end (default: pipeline.serve)")] = None,
                 ray_address: Annotated[Optional[str], typer.Option(
                     "--ray-address", help="Ray cluster (default: RAY_ADDRESS, else a local one)")] = None) -> None:
    """Curate → train (1A) → benchmark/compare → 1B → 1C → compress → modifiers → router → serve.

    Finished stages whose manifests match are skipped; an interrupted one resumes. Ends with
    runs/<name>/report/report.{md,html}, a probe of the served endpoint, and (unless --no-serve)
    the endpoint up until Ctrl-C.
    """
    import ray

    from cogumi.pipeline.config import STAGE_NAMES
    from cogumi.pipeline.report import write_report
    from cogumi.pipeline.runner import run_stages
    from cogumi.pipeline.stages import PipelinePlan

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    cfg = load(config, set_)
    for name in [*(force or []), *(only or [])]:
        if name not in STAGE_NAMES and name != "all":
            raise CogumiError(f"unknown stage '{name}'", "--force/--only", f"choose from {', '.join(STAGE_NAMES)}")
    if only:
        cfg.pipeline.stages = [s for s in STAGE_NAMES if s in only]
    keep_serving = cfg.pipeline.serve if serve is None else serve
    address = ray_address or os.environ.get("RAY_ADDRESS")
    plan = PipelinePlan(cfg)  # checks the run directory can be opened before any cluster work
    from cogumi.evaluate.sandbox import configure as configure_sandbox

    configure_sandbox(cfg.evaluate.sandbox)  # set before Ray starts, so its workers inherit it
    if not ray.is_initialized():
        try:
            # "local": a fresh Ray of this machine, never a cluster some other program left running
            connect(address or "local", log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise CogumiError(f"cannot start or reach the Ray cluster at {address or 'local'} ({why})",
                              "--ray-address / RAY_ADDRESS", "start the cluster (`ray up cluster.yaml`) or leave "
                              "the address out to run on a local Ray") from None
    chosen = [s for s in plan.stages() if s.name in cfg.pipeline.stages]
    t0 = time.perf_counter()
    outcomes: list = []
    try:
        run_stages(cfg, chosen, force=set(force or []), console=err_console, outcomes=outcomes)
    finally:
        _record_pipeline(plan, cfg, outcomes, time.perf_counter() - t0)
        paths = write_report(plan.run)
    for o in outcomes:
        console.print(summary_line(o), highlight=False, markup=False)
    console.print(f"pipeline finished in {time.perf_counter() - t0:.0f}s · report: {paths['markdown']} "
                  f"and {paths['html']}", highlight=False)
    final = next((o for o in outcomes if o.name == "final-eval" and o.status in ("ran", "skipped")), None)
    if final is not None and final.summary.get("headline"):
        console.print(final.summary["headline"], style="bold", highlight=False, markup=False, soft_wrap=True)
    if "serve" in cfg.pipeline.stages:
        _serve(plan, keep_serving, forced=bool({"serve", "all"} & set(force or [])))
    if plan._done("compress.gguf"):
        console.print(f"serve what this run promoted: cogumi serve --run {plan.run.path}", highlight=False,
                      soft_wrap=True)


def summary_line(o) -> str:
    """A stage's line in the summary printed at the end: name, status, seconds, note."""
    from cogumi.pipeline.runner import note

    text = note(o) or ("up to date" if o.status == "skipped" else "")
    return f"{o.name:<10} {o.status:<9} {o.seconds:7.1f}s  {text}"


def _record_pipeline(plan, cfg, outcomes, seconds: float) -> None:
    """The ``pipeline`` stage: the cluster it ran on and each stage's status, time and note.

    ``pipeline.json`` is the record the run report's stage table reads, so the console
    summary, ``pipeline.md`` and the report say the same status for every stage.
    """
    import ray

    from cogumi.pipeline.runner import STATUSES, note

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    cluster = {"nodes": len(nodes), "cpus": total.get("CPU", 0), "gpus": total.get("GPU", 0),
               "memory_gb": round(total.get("memory", 0) / 1e9, 1)}
    stages = [{"name": o.name, "status": o.status, "seconds": round(o.seconds, 1), "detail": note(o)}
              for o in outcomes]
    with plan.run.stage("pipeline").begin(cfg.section_hash()) as rec:
        rec.metrics.update({"seconds": round(seconds, 1), "cluster": cluster,
                            "stages": {s["name"]: f"{s['status']} {s['seconds']}s" for s in stages}})
        rec.method["ray"] = f"{len(nodes)} node(s), Ray {ray.__version__}"
        rec.write_json("pipeline.json", {"seconds": round(seconds, 1), "cluster": cluster, "stages": stages})
        rec.write_text(RUN_CONFIG, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        lines = ["# Pipeline", "", f"{len(nodes)} Ray node(s): {cluster['cpus']:g} CPUs, {cluster['gpus']:g} GPUs, "
                 f"{cluster['memory_gb']} GB; {seconds:.0f} s in all.", "", "| stage | status | seconds | note |",
                 "|---|---|---|---|"]
        lines += [f"| {s['name']} | {s['status']} | {s['seconds']} | {s['detail'][:160]} |" for s in stages]
        used = dict.fromkeys(s["status"] for s in stages)
        lines += ["", "Statuses: " + "; ".join(f"{k}: {STATUSES[k]}" for k in used if k in STATUSES) + "."]
        rec.write_text("pipeline.md", "\n".join(lines) + "\n")


def _serve(plan, keep_serving: bool, forced: bool) -> None:
    """Deploy what the run built, probe it, record the probe in the report, then serve or stop."""
    from cogumi.pipeline.probe import probe, probe_up_to_date, record_probe
    from cogumi.pipeline.report import write_report
    from cogumi.serve.runner import run_server

    built = plan.built_config()
    if not keep_serving and not forced and probe_up_to_date(built):
        console.print("serve    skipped     0.0s  probe up to date (use `cogumi serve` to serve it)", highlight=False)
        return
    stop = threading.Event()
    failure: list[BaseException] = []

    def ready(url: str) -> None:
        try:
            keys = [k for k in os.environ.get("COGUMI_API_KEY", "").split(",") if k.strip()]
            result = probe(url, keys[0] if keys else None, max_tokens=min(64, built.sampling.max_tokens))
            record_probe(built, url, result)
            paths = write_report(plan.run)
            console.print(f"serve probe: {result['answered']}/{result['requests']} answered, median "
                          f"{result['latency_ms_median']} ms, routes {result['routes']} · report updated: "
                          f"{paths['html']}", highlight=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised after Serve shut down
            failure.append(exc)
            stop.set()
            return
        if keep_serving:
            console.print(f"[bold green]cogumi serving[/] at {url}  (chat page {url}/ · API {url}/v1 · "
                          f"Ctrl-C stops)", highlight=False)
        else:
            stop.set()

    run_server(built.serve, None, on_ready=ready, stop=stop)
    if failure:
        raise failure[0]


def register(app: typer.Typer) -> None:
    """Add this phase's command to the ``cogumi`` app."""
    app.command("pipeline")(pipeline_cmd)
