"""CLI commands of Phase 1A/1B and the search: ``cogumi train`` and ``cogumi tune``."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from cogumi.cli.options import ConfigOpt, SetOpt, console, err_console, load, user_errors


def _connect(ray_address: str | None) -> None:
    from cogumi.raycluster import connect

    if ray_address:
        connect(ray_address)


@user_errors
def train_cmd(config: ConfigOpt = None, set_: SetOpt = None,
              force: Annotated[bool, typer.Option("--force", help="rerun even if the stage is up to date")] = False,
              ray_address: Annotated[str | None, typer.Option(
                  "--ray-address", help="Ray cluster (default: RAY_ADDRESS or a local one)")] = None,
              json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False) -> None:
    """Phase 1A/1B: QLoRA SFT on Ray Train; writes adapter/, checkpoints.csv, curves and generations."""
    from cogumi.train.stage import run_train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load(config, set_)
    _connect(ray_address)
    summary = run_train(cfg, force=force)
    if json_out:
        console.print_json(json.dumps(summary, default=str))
        return
    if summary["skipped"]:
        err_console.print(f"{cfg.train.stage} is up to date in {summary['stage']} (use --force to rerun)")
        return
    m, meth = summary["metrics"], summary["method"]
    console.print(f"trained {m['global_step']} steps ({m['stop_reason']}) on {m['train_examples']} examples; "
                  f"train loss {m['first_train_loss']:.3f} -> {m['last_train_loss']:.3f}; best val loss "
                  f"{m['best_eval_loss']:.3f} (ppl {m['best_perplexity']:.2f}) at step {m['best_step']}",
                  highlight=False)
    console.print(f"ran: {meth.get('base')} · optimizer {meth.get('optimizer')} · {meth.get('packing')} · "
                  f"{meth.get('workers')}", highlight=False)
    console.print(f"adapter: {summary['adapter']}", highlight=False)


@user_errors
def tune_cmd(config: ConfigOpt = None, set_: SetOpt = None,
             ray_address: Annotated[str | None, typer.Option(
                 "--ray-address", help="Ray cluster (default: RAY_ADDRESS or a local one)")] = None,
             json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False) -> None:
    """Search LR, LoRA rank, alpha and dropout with Ray Tune (ASHA; Optuna when installed)."""
    from cogumi.train.tune import run_tune

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load(config, set_)
    _connect(ray_address)
    summary = run_tune(cfg)
    if json_out:
        console.print_json(json.dumps(summary, default=str))
        return
    best = summary["best"]
    console.print(f"{summary['trials']} trials ({summary['search']}, ASHA); best val loss {best['eval_loss']:.4f} "
                  f"with {json.dumps(best['config'])}", highlight=False)
    console.print(f"best adapter: {best['checkpoint']}\nresults: {summary['results']}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this phase's commands to the ``cogumi`` app."""
    app.command("train")(train_cmd)
    app.command("tune")(tune_cmd)
