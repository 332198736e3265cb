"""CLI commands of evaluation: ``cogumi benchmark``, ``cogumi compare`` (Phase 1B), ``cogumi distill`` (1C)."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Optional

import typer

from cogumi.cli.options import (
    ConfigOpt,
    ForceOpt,
    JsonOpt,
    RayAddressOpt,
    SetOpt,
    console,
    err_console,
    load,
    user_errors,
)


def _quiet() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")


@user_errors
def benchmark_cmd(config: ConfigOpt = None, set_: SetOpt = None, force: ForceOpt = False,
                  save_baseline: Annotated[bool, typer.Option(
                      "--save-baseline", help="also save these results as the run's baseline")] = False,
                  json_out: JsonOpt = False) -> None:
    """Standard benchmarks (lm-eval), code pass@1 in a sandbox, perplexity and samples; deltas vs a baseline."""
    from cogumi.evaluate.benchmark import benchmark_stage
    from cogumi.evaluate.report import flat_metrics

    _quiet()
    cfg = load(config, set_)
    out = benchmark_stage(cfg, force=force, save_baseline=save_baseline)
    res = out["results"]
    if json_out:
        console.print_json(json.dumps(res, default=str))
        return
    if out["skipped"]:
        err_console.print(f"benchmark is up to date in {out['stage']} (use --force to rerun)")
    deltas = res.get("deltas") or {}
    for name, m in flat_metrics(res).items():
        delta = f"  ({deltas[name]:+.4f} vs baseline)" if name in deltas else ""
        console.print(f"{name}: {m['value']:.4f} (n={m['n']}){delta}", highlight=False)
    for part, reason in (res.get("harness") or {}).get("skipped", {}).items():
        console.print(f"not measured: {part}: {reason}", highlight=False)
    console.print(f"report: {out['stage']}/report.md", highlight=False)


@user_errors
def compare_cmd(config: ConfigOpt = None, set_: SetOpt = None, force: ForceOpt = False,
                label: Annotated[str, typer.Option(help="stage name of this comparison, e.g. compare-1b1")] = "compare",
                baseline: Annotated[Optional[str], typer.Option(
                    help="label of an earlier comparison to show deltas against")] = None,
                ray_address: RayAddressOpt = None, json_out: JsonOpt = False) -> None:
    """Phase 1B: student vs reference under a blind, position-swapped judge; decision, cost, failure JSONL."""
    from cogumi.evaluate.compare import compare_stage

    _quiet()
    cfg = load(config, set_)
    if ray_address:
        cfg.evaluate.ray.address = ray_address
    out = compare_stage(cfg, label=label, baseline=baseline, force=force)
    res = out["results"]
    if json_out:
        console.print_json(json.dumps(res, default=str))
        return
    if out["skipped"]:
        err_console.print(f"{label} is up to date in {out['stage']} (use --force to rerun)")
    for cat, t in list(res["summary"]["categories"].items()) + [("overall", res["summary"]["overall"])]:
        score = "-" if t["score"] is None else f"{t['score']:.1f}"
        delta = f" ({res['deltas'][cat]:+.1f} vs {baseline})" if cat in res.get("deltas", {}) else ""
        console.print(f"{cat:12s} W {t['win']:3d}  L {t['loss']:3d}  T {t['tie']:3d}  errors {t['error']:3d}  "
                      f"score {score}{delta}", highlight=False)
    console.print(f"decision: {res['decision']['text']}", highlight=False)
    cache = res["reference_cache"]
    console.print(f"reference answers: {cache['reused']} reused from cache, {cache['new_calls']} new calls; "
                  f"cost ${res['cost']['total_usd']:.4f}", highlight=False)
    console.print(f"failures: {out['stage']}/failures.jsonl · report: {out['stage']}/report.md", highlight=False)


@user_errors
def distill_cmd(config: ConfigOpt = None, set_: SetOpt = None, force: ForceOpt = False,
                ray_address: RayAddressOpt = None, json_out: JsonOpt = False) -> None:
    """Phase 1C: category-specific self-consistency distillation; training JSONL + agreement statistics."""
    from cogumi.evaluate.distill_stage import distill_stage

    _quiet()
    cfg = load(config, set_)
    if ray_address:
        cfg.evaluate.ray.address = ray_address
    out = distill_stage(cfg, force=force)
    summary = out["summary"]
    if json_out:
        console.print_json(json.dumps(summary, default=str))
        return
    if out["skipped"]:
        err_console.print(f"distill is up to date in {out['stage']} (use --force to rerun)")
    for cat, s in summary["stats"].items():
        agree = "-" if s["mean_agreement"] is None else f"{s['mean_agreement']:.2f}"
        checked = s["checked_against_ground_truth"]
        acc = "" if s["accuracy"] is None else f", {s['correct']}/{checked} match ground truth"
        console.print(f"{cat:12s} {s['strategy']:8s} kept {s['kept_prompts']}/{s['prompts']} prompts -> "
                      f"{s['examples']} examples, mean agreement {agree}{acc}, errors {s['errors']}", highlight=False)
    console.print(f"training data: {out['stage']}/distilled.jsonl ({summary['examples']} examples)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this phase's commands to the ``cogumi`` app."""
    app.command("benchmark")(benchmark_cmd)
    app.command("compare")(compare_cmd)
    app.command("distill")(distill_cmd)
