"""CLI command of Phase 3: ``cogumi modifiers``."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from cogumi.cli.options import ConfigOpt, SetOpt, console, err_console, load, user_errors
from cogumi.raycluster import connect


@user_errors
def modifiers_cmd(config: ConfigOpt = None, set_: SetOpt = None,
                  force: Annotated[bool, typer.Option("--force", help="rebuild even if the stage is up to date")]
                  = False,
                  ray_address: Annotated[Optional[str], typer.Option(
                      "--ray-address", help="Ray cluster (default: RAY_ADDRESS or a local one)")] = None,
                  json_out: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False) -> None:
    """Phase 3: mine base-model failures per domain, cluster them, answer them with the tiered teacher
    cascade, train one LoRA adapter per domain and validate it; writes <run>/modifiers/ (adapters/,
    routing.parquet for `cogumi router`, report.md).
    """
    import logging


    from cogumi.modifiers.stage import modifiers_stage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load(config, set_)
    if ray_address:
        connect(ray_address)
    result = modifiers_stage(cfg, force)
    metrics, stage_path = result["metrics"], result["stage"]
    if result["skipped"]:
        err_console.print(f"modifiers are up to date in {stage_path} (use --force to rebuild)")
    if json_out:
        console.print_json(json.dumps(metrics))
    if result["skipped"] or json_out:
        return
    console.print(f"modifiers -> {stage_path}: {metrics['failures']} failures, {metrics['clusters']} clusters, "
                  f"adapters {', '.join(metrics['adapters']) or 'none'}; cascade shares {metrics['cascade_shares']}; "
                  f"held-out delta {metrics['validation_delta']}", highlight=False)
    for msg in metrics["degraded"]:
        err_console.print(f"degraded: {msg}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this phase's command to the ``cogumi`` app."""
    app.command("modifiers")(modifiers_cmd)
