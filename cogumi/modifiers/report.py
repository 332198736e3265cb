"""Validation figures (adapter vs base) and the stage's Markdown report."""

from __future__ import annotations

from typing import Any


def _acc(rows: list[dict[str, Any]]) -> float | None:
    return round(sum(r["passed"] for r in rows) / len(rows), 4) if rows else None


def validation_summary(base_rows: list[dict[str, Any]], mod_rows: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Compare the adapter's answers with the base's, task by task.

    Args:
        base_rows: mined rows of one domain (``split``, ``passed``, ``score``).
        mod_rows: the same tasks answered with the adapter, same order.
        kind: verification kind (``judge`` adds mean scores).

    Returns:
        ``{holdout: {...}, all: {...}}`` with accuracy of base and adapter, their delta, the
        adapter's win/tie/loss rate on scores and (judge) mean scores.
    """
    out = {}
    for name, keep in (("holdout", lambda r: r["split"] == "holdout"), ("all", lambda r: True)):
        pairs = [(b, m) for b, m in zip(base_rows, mod_rows) if keep(b)]
        bs, ms = [b for b, _ in pairs], [m for _, m in pairs]
        wins = sum((m["score"] or 0) > (b["score"] or 0) for b, m in pairs)
        losses = sum((m["score"] or 0) < (b["score"] or 0) for b, m in pairs)
        acc_b, acc_m = _acc(bs), _acc(ms)
        entry = {"tasks": len(pairs), "base_accuracy": acc_b, "adapter_accuracy": acc_m,
                 "delta": round(acc_m - acc_b, 4) if acc_m is not None and acc_b is not None else None,
                 "win_rate": round(wins / len(pairs), 4) if pairs else None,
                 "loss_rate": round(losses / len(pairs), 4) if pairs else None}
        if kind == "judge":
            sb = [b["score"] for b in bs if b["score"] is not None]
            sm = [m["score"] for m in ms if m["score"] is not None]
            entry["base_mean_judge"] = round(sum(sb) / len(sb), 3) if sb else None
            entry["adapter_mean_judge"] = round(sum(sm) / len(sm), 3) if sm else None
        out[name] = entry
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _delta(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def render_report(metrics: dict[str, Any], method: dict[str, str], cascade: dict[str, Any], clustering: Any,
                  validation: dict[str, Any]) -> str:
    """One-page Markdown report; every figure in it is in the stage's JSON files."""
    lines = ["# Domain modifiers report", "",
             f"Tasks answered by the base: {metrics['tasks']}; failures (mining split): {metrics['failures']} "
             f"({', '.join(f'{d} {n}' for d, n in metrics['failures_per_domain'].items())}).", "",
             f"Clusters: k requested {clustering.k_requested}, used {clustering.k_used}"
             + (f" ({clustering.note})" if clustering.note else "") + "; sizes "
             + (", ".join(str(s) for s in metrics["cluster_sizes"]) or "none") + " (see clusters.md).", "",
             "## Teacher cascade", "",
             f"{cascade['prompts']} prompts, {cascade['kept']} answers kept ({cascade['verified']} verified, "
             f"{cascade['unverified_kept']} unverified from the last tier), {cascade['dropped']} dropped; "
             f"teacher cost ${cascade['teacher_cost_usd']:.6f}, verification cost ${cascade['check_cost_usd']:.6f}.",
             "", "| tier | calls | answered | accepted | share of kept | cost USD | status |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for t in cascade["tiers"]:
        lines.append(f"| {t['name']} | {t['calls']} | {t['answered']} | {t['accepted']} | {_pct(t['share'])} | "
                     f"{t['cost_usd']:.6f} | {'DOWN: ' + t['down'][:80] if t['down'] else 'up'} |")
    lines += ["", "Spec expectation: roughly 60-70 / 20-25 / 10-15 % (measured above on this run's data).", "",
              "## Adapters vs base (held-out tasks)", "",
              "| domain | tasks | base accuracy | adapter accuracy | delta | win rate |",
              "|---|---:|---:|---:|---:|---:|"]
    for d, v in validation.items():
        h = v["holdout"]
        lines.append(f"| {d} | {h['tasks']} | {_pct(h['base_accuracy'])} | {_pct(h['adapter_accuracy'])} | "
                     f"{_delta(h['delta'])} | {_pct(h['win_rate'])} |")
    if not validation:
        lines.append("| (no adapter trained) | | | | | |")
    lines += ["", f"Routing set rows: {metrics['routing_rows']}.", "", "## Degradations", ""]
    lines += [f"- {m}" for m in metrics["degraded"]] or ["- none"]
    lines += ["", "## Method", ""] + [f"- {k}: {v}" for k, v in method.items()]
    return "\n".join(lines) + "\n"
