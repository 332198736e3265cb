"""Benchmark results: flat metrics, deltas against a saved baseline, a Markdown report."""

from __future__ import annotations

from typing import Any


LOWER_IS_BETTER = ("perplexity", "nll_per_token")


def flat_metrics(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"name": {"value", "n"}}`` for every number a benchmark run measured."""
    out: dict[str, dict[str, Any]] = {}
    for task, res in (results.get("harness") or {}).get("tasks", {}).items():
        for metric, value in res["metrics"].items():
            out[f"{task} {metric}"] = {"value": value, "n": res.get("n")}
    for suite, res in (results.get("code") or {}).items():
        if isinstance(res, dict) and res.get("pass@1") is not None:
            out[f"{suite} pass@1"] = {"value": res["pass@1"], "n": res["scored"]}
    ppl = results.get("perplexity") or {}
    if "perplexity" in ppl:
        out["perplexity"] = {"value": ppl["perplexity"], "n": ppl["tokens"]}
    return out


def deltas(current: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, float]:
    """``{metric: current - baseline}`` for metrics both runs measured."""
    if not baseline:
        return {}
    now, before = flat_metrics(current), flat_metrics(baseline)
    return {k: now[k]["value"] - before[k]["value"] for k in now if k in before}


def perplexity_label(ppl: dict[str, Any]) -> str:
    """The data behind the benchmark's perplexity: text, window, stride and tokens scored."""
    return (f"the benchmark held-out text (evaluate.benchmark.perplexity.text_path; the bundled heldout.txt unless "
            f"set), sliding window {ppl.get('window', '?')} / stride {ppl.get('stride', '?')}, "
            f"{ppl.get('tokens', '?')} tokens scored")


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if any(k in name for k in LOWER_IS_BETTER) else f"{100 * value:.1f}%"


def _fmt_delta(name: str, d: float | None) -> str:
    if d is None:
        return "-"
    if any(k in name for k in LOWER_IS_BETTER):
        return f"{d:+.2f}"
    return f"{100 * d:+.1f} pts"


def render_markdown(results: dict[str, Any], baseline: dict[str, Any] | None = None,
                    baseline_name: str | None = None) -> str:
    """The benchmark report: one table of every measured number, with deltas when a baseline exists."""
    flat, base = flat_metrics(results), flat_metrics(baseline or {})
    diff = deltas(results, baseline)
    lines = [f"# Benchmark report — {results.get('timestamp', '')}", "",
             f"Model: `{results.get('model', {}).get('model')}` ({results.get('model', {}).get('backend')})"
             + (f" + adapter `{results['model']['adapter']}`" if results.get("model", {}).get("adapter") else ""),
             ""]
    if baseline is not None:
        lines += [f"Baseline: {baseline_name or 'saved baseline'} ({baseline.get('timestamp', '?')})", ""]
    lines += ["| metric | value | n | baseline | delta |", "|---|---|---|---|---|"]
    for name, m in flat.items():
        b = base.get(name, {}).get("value")
        lines.append(f"| {name} | {_fmt(name, m['value'])} | {m['n'] if m['n'] is not None else '-'} | "
                     f"{_fmt(name, b)} | {_fmt_delta(name, diff.get(name))} |")
    ppl = results.get("perplexity") or {}
    if "perplexity" in ppl:
        lines += ["", f"perplexity: {perplexity_label(ppl)} (the compression stage measures its own held-out set "
                  "with other windows, so its perplexity differs)."]
    skipped = dict((results.get("harness") or {}).get("skipped", {}))
    for part, res in results.items():
        if isinstance(res, dict) and "skipped" in res and isinstance(res["skipped"], str):
            skipped[part] = res["skipped"]
    if skipped:
        lines += ["", "Not measured:", *[f"- {k}: {v}" for k, v in skipped.items()]]
    errors = {s: r["errors"] for s, r in (results.get("code") or {}).items() if isinstance(r, dict) and r.get("errors")}
    if errors:
        lines += ["", "Code problems whose generation failed (left out of pass@1): "
                  + ", ".join(f"{s}: {n}" for s, n in errors.items())]
    gens = results.get("generations") or []
    if gens:
        lines += ["", "## Fixed-prompt generations", ""]
        for g in gens:
            text = g.get("text", f"(error: {g.get('error')})").strip().replace("\n", " ")
            lines.append(f"- **{g['prompt']}** → {text[:400]}")
    methods = results.get("method") or {}
    if methods:
        lines += ["", "## What ran", "", *[f"- {k}: {v}" for k, v in methods.items()]]
    lines += ["", "Scores on a handful of bundled items carry large sampling error; read them as smoke "
              "tests and for deltas between runs of the same setup, not as model quality."]
    return "\n".join(lines) + "\n"
