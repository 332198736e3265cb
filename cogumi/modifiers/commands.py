"""CLI command of Phase 3: ``cogumi modifiers``."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from cogumi.cli import ConfigOpt, SetOpt, _load, console, err_console, user_errors


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

    import ray

    from cogumi.artifacts import RunDir
    from cogumi.modifiers.stage import STAGE, run_modifiers_stage, stage_key

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = _load(config, set_)
    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(STAGE)
    cfg_hash, inputs = stage_key(cfg)
    if not force and stage.can_skip(cfg_hash, inputs):
        err_console.print(f"modifiers are up to date in {stage.path} (use --force to rebuild)")
        if json_out:
            console.print_json(json.dumps(stage.manifest().metrics))
        return
    if not ray.is_initialized():
        ray.init(address=ray_address, ignore_reinit_error=True)
    with stage.begin(cfg_hash, inputs) as rec:
        metrics = run_modifiers_stage(cfg, rec, run)
    if json_out:
        console.print_json(json.dumps(metrics))
        return
    console.print(f"modifiers -> {stage.path}: {metrics['failures']} failures, {metrics['clusters']} clusters, "
                  f"adapters {', '.join(metrics['adapters']) or 'none'}; cascade shares {metrics['cascade_shares']}; "
                  f"held-out delta {metrics['validation_delta']}", highlight=False)
    for msg in metrics["degraded"]:
        err_console.print(f"degraded: {msg}", highlight=False)
