"""CLI command of Phase 4: ``cogumi router``."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from cogumi.cli.options import ConfigOpt, SetOpt, console, err_console, load, user_errors


@user_errors
def router_cmd(config: ConfigOpt = None, set_: SetOpt = None,
               data: Annotated[Optional[str], typer.Option(
                   "--data", help="routing set (.parquet/.jsonl); default: router.data.* (see `cogumi config router`)")
               ] = None,
               force: Annotated[bool, typer.Option("--force", help="rebuild even if the stage is up to date")] = False,
               ray_address: Annotated[Optional[str], typer.Option(
                   "--ray-address", help="Ray cluster for feature extraction (default: RAY_ADDRESS or local)")] = None,
               json_out: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False) -> None:
    """Phase 4: train the router (calibrated MLP, domain classifier, escalation detector); writes <run>/router/.

    The routing set comes from --data, router.data.file, the modifiers stage
    (<run>/modifiers/routing.parquet) or, when neither exists, a local proxy set built
    with the base model (the manifest says which). Serve it with
    serve.routing.artifact=<run>/router.
    """
    import logging

    from cogumi.route.stage import router_stage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load(config, set_)
    if data:
        cfg.router.data.file, cfg.router.data.source = data, "file"
    if ray_address:
        cfg.router.extract.address = ray_address
    result = router_stage(cfg, force)
    metrics, stage_path, source = result["metrics"], result["stage"], result["source"]
    if result["skipped"]:
        err_console.print(f"router is up to date in {stage_path} (use --force to rebuild)")
    if json_out:
        console.print_json(json.dumps(metrics))
    if result["skipped"] or json_out:
        return
    t = metrics["targets"]
    c = metrics["cascade"]
    console.print(f"router -> {stage_path}  ({source.kind}: {metrics['rows']['total']} rows, "
                  f"test {metrics['rows']['test']})", highlight=False)
    console.print(f"cascade router: test accuracy {c['test_accuracy']:.1%} (target {t['router_accuracy']['target']}:"
                  f" {'met' if t['router_accuracy']['met'] else 'NOT met'}); ECE {c['test_ece_raw']:.3f} -> "
                  f"{c['test_ece']:.3f} with {c['calibration']} (target {t['ece']['target']}: "
                  f"{'met' if t['ece']['met'] else 'NOT met'})", highlight=False)
    console.print(f"pre-route: {metrics['pre']['test_accuracy']:.1%} · domains: "
                  f"{metrics['domain_classifier']['test_accuracy']:.1%} · escalation (held-out): "
                  f"{metrics['escalation']['test']['accuracy']:.1%} · thresholds: operating "
                  f"{metrics['thresholds']['operating']}, recommended {metrics['thresholds']['recommended']}",
                  highlight=False)
    console.print(f"report: {stage_path}/report.md · serve it with "
                  f"--set serve.routing.artifact={stage_path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this phase's command to the ``cogumi`` app."""
    app.command("router")(router_cmd)
