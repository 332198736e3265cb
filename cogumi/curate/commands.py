"""CLI commands of Phase 0: ``cogumi curate`` and ``cogumi dedup``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cogumi.cli.options import ConfigOpt, SetOpt, console, err_console, load, user_errors
from cogumi.errors import CogumiError


@user_errors
def curate_cmd(config: ConfigOpt = None, set_: SetOpt = None,
               force: Annotated[bool, typer.Option("--force", help="rerun even if the stage is up to date")] = False,
               ray_address: Annotated[Optional[str], typer.Option("--ray-address",
                                                                  help="Ray cluster (default: RAY_ADDRESS or local)")] = None,
               json_out: Annotated[bool, typer.Option("--json", help="print the stats as JSON")] = False) -> None:
    """Phase 0: teachers generate, the judge scores, rules filter, dedup; writes curated.parquet and a report."""
    from cogumi.curate.stage import curate_stage

    cfg = load(config, set_)
    if ray_address:
        cfg.curate.ray.address = ray_address
    result = curate_stage(cfg, force, notify=lambda m: err_console.print(m, highlight=False))
    summary, stage_path = result["summary"], result["stage"]
    if result["skipped"]:
        err_console.print(f"curate is up to date in {stage_path} (use --force to rerun)")
    if json_out:
        console.print_json(json.dumps(summary))
    if result["skipped"] or json_out:
        return
    r = summary["rows"]
    console.print(f"curated {r['ok']} of {r['input']} rows (filtered {r['filtered']}, errors {r['error']}) "
                  f"-> {stage_path}/curated.parquet", highlight=False)
    console.print(f"report: {stage_path}/report.md · spent ${summary['cost_total_usd']:.4f}", highlight=False)


@user_errors
def dedup_cmd(input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="a .jsonl or .parquet file")],
              out: Annotated[Path, typer.Option("--out", "-o", help="output file (.jsonl or .parquet)")],
              threshold: Annotated[float, typer.Option(help="Jaccard similarity of character 3-gram sets")] = 0.8,
              fields: Annotated[str, typer.Option(help="comma-separated columns to compare")] = "instruction,response",
              num_perm: Annotated[int, typer.Option(help="MinHash permutations")] = 128,
              ngram: Annotated[int, typer.Option(help="character n-gram size")] = 3,
              id_field: Annotated[Optional[str], typer.Option(help="column of unique row ids")] = None,
              score_field: Annotated[Optional[str], typer.Option(help="column ranking duplicates (highest kept)")] = None,
              workers: Annotated[int, typer.Option(help="0 = in process, N = Ray Data with N workers")] = 0,
              json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Remove exact and near-duplicates (MinHash-LSH) from a JSONL or Parquet file."""
    from cogumi.curate.dedup.files import run_dedup_file

    if not 0.0 < threshold <= 1.0:
        raise CogumiError(f"threshold {threshold} is outside (0, 1]", "--threshold", "use e.g. 0.8")
    names = [f.strip() for f in fields.split(",") if f.strip()]
    if not names:
        raise CogumiError("no fields to compare", "--fields", "pass e.g. --fields instruction,response")
    summary = run_dedup_file(input_path, out, names, threshold, num_perm, ngram, id_field, score_field, workers)
    if json_out:
        console.print_json(json.dumps(summary))
        return
    console.print(f"kept {summary['kept']} of {summary['rows']} rows ({summary['exact']} exact and "
                  f"{summary['near']} near duplicates removed) -> {out}; clusters in {summary['duplicates_report']}",
                  highlight=False)


def register(app: typer.Typer) -> None:
    """Add this phase's commands to the ``cogumi`` app."""
    app.command("curate")(curate_cmd)
    app.command("dedup")(dedup_cmd)
