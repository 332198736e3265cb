"""Phase 1B scoring: win/loss/tie per item, the overall score, the decision tree, cost, tables.

Spec: for each example, win when the local model's average rating exceeds the
reference's by more than 0.5, loss when it is lower by more than 0.5, else tie;
``score = (wins + 0.5 * ties) / total * 100``; >= 90 skip Phase 1C, 85-90
optional (10K targeted examples), < 85 required (40K targeted examples).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from cogumi.evaluate.judge import mean_score


def passes(row: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The row's parsed judge passes and the reasons of the failed ones."""
    ok, errors = [], []
    for key in ("judge_pass1", "judge_pass2"):
        raw = row.get(key)
        if not raw:
            continue
        data = json.loads(raw) if isinstance(raw, str) else raw
        (errors.append(data["error"]) if "error" in data else ok.append(data))
    return ok, errors


def outcome(row: dict[str, Any], margin: float = 0.5) -> dict[str, Any]:
    """``{"outcome": win|loss|tie|error, "local_score", "reference_score", "passes", "reason"}``.

    Scores average the four criteria and then the (up to two) passes.
    """
    if row.get("local_error") or row.get("reference_error"):
        which = "local" if row.get("local_error") else "reference"
        return {"outcome": "error", "passes": 0,
                "reason": f"{which} answer failed: {row.get(f'{which}_error')}"}
    ok, errors = passes(row)
    if not ok:
        return {"outcome": "error", "passes": 0, "reason": "; ".join(errors) or "not judged"}
    local = sum(mean_score(p["local"]) for p in ok) / len(ok)
    ref = sum(mean_score(p["reference"]) for p in ok) / len(ok)
    diff = local - ref
    result = "win" if diff > margin else "loss" if diff < -margin else "tie"
    # position preference: how much higher the answer shown first was rated, averaged over passes
    first = [mean_score(p["local"]) - mean_score(p["reference"]) for p in ok[:1]]
    if len(ok) == 2:
        first.append(mean_score(ok[1]["reference"]) - mean_score(ok[1]["local"]))
    return {"outcome": result, "local_score": round(local, 3), "reference_score": round(ref, 3),
            "passes": len(ok), "first_position_bonus": round(sum(first) / len(first), 3) if len(ok) == 2 else None,
            "reason": "; ".join(errors) if errors else None}


def tally(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and the spec's score over items that already carry ``outcome``."""
    counts = {k: sum(1 for i in items if i["outcome"] == k) for k in ("win", "loss", "tie", "error")}
    judged = counts["win"] + counts["loss"] + counts["tie"]
    score = 100.0 * (counts["win"] + 0.5 * counts["tie"]) / judged if judged else None
    out = {**counts, "judged": judged, "total": len(items), "score": score}
    for k in ("win", "loss", "tie"):
        out[f"{k}_rate"] = counts[k] / judged if judged else None
    return out


def summarise(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-category and overall tallies, position-bias and single-pass counts."""
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_cat[item["category"]].append(item)
    bonuses = [i["first_position_bonus"] for i in items if i.get("first_position_bonus") is not None]
    return {"overall": tally(items), "categories": {c: tally(v) for c, v in sorted(by_cat.items())},
            "single_pass_items": sum(1 for i in items if i.get("passes") == 1),
            "first_position_bonus": round(sum(bonuses) / len(bonuses), 3) if bonuses else None}


def decision(score: float | None, skip_at: float = 90.0, require_below: float = 85.0) -> dict[str, Any]:
    """The spec's decision tree for Phase 1C."""
    if score is None:
        return {"phase_1c": "undecided", "text": "no item was judged, so there is no score to decide on"}
    if score >= skip_at:
        return {"phase_1c": "skip", "text": f"score {score:.1f} >= {skip_at:g}: skip Phase 1C, proceed to Phase 2 "
                                             "(compression)"}
    if score >= require_below:
        return {"phase_1c": "optional", "text": f"score {score:.1f} in [{require_below:g}, {skip_at:g}): Phase 1C "
                                                 "optional, ~10K targeted examples"}
    return {"phase_1c": "required", "text": f"score {score:.1f} < {require_below:g}: Phase 1C required, "
                                             "~40K targeted examples"}


def weak_categories(summary: dict[str, Any], skip_at: float = 90.0) -> list[str]:
    """Categories scoring below the skip threshold, weakest first (Phase 1C focus)."""
    cats = [(c, t["score"]) for c, t in summary["categories"].items() if t["score"] is not None]
    return [c for c, s in sorted(cats, key=lambda x: x[1]) if s < skip_at]


def cost_report(usage: dict[str, dict[str, int]], prices: dict[str, tuple[float, float, str]]) -> dict[str, Any]:
    """Dollars per role from token counts.

    Args:
        usage: ``{role: {"calls", "prompt_tokens", "completion_tokens"}}``.
        prices: ``{role: (usd_per_mtok_in, usd_per_mtok_out, where the price came from)}``.
    """
    roles, total = {}, 0.0
    for role, u in usage.items():
        p_in, p_out, source = prices.get(role, (0.0, 0.0, "unpriced"))
        usd = (u.get("prompt_tokens", 0) * p_in + u.get("completion_tokens", 0) * p_out) / 1e6
        roles[role] = {**u, "usd": round(usd, 6), "price_in_per_mtok": p_in, "price_out_per_mtok": p_out,
                       "price_source": source}
        total += usd
    return {"roles": roles, "total_usd": round(total, 6)}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def render_markdown(summary: dict[str, Any], decision_: dict[str, Any], cost: dict[str, Any], label: str,
                    baseline: dict[str, Any] | None = None, baseline_label: str | None = None,
                    margin: float = 0.5) -> str:
    """The comparison report: per-category table, decision, cost, and deltas against a baseline run."""
    base_cats = (baseline or {}).get("categories", {})
    head = "| category | wins | losses | ties | errors | score |" + (" baseline | delta |" if baseline else "")
    sep = "|---|---|---|---|---|---|" + ("---|---|" if baseline else "")
    lines = [f"# Phase 1B comparison — {label}", "", head, sep]
    rows = list(summary["categories"].items()) + [("**overall**", summary["overall"])]
    for cat, t in rows:
        line = f"| {cat} | {t['win']} | {t['loss']} | {t['tie']} | {t['error']} | {_pct(t['score'])} |"
        if baseline:
            b = (baseline.get("overall") if cat == "**overall**" else base_cats.get(cat, {})) or {}
            bs = b.get("score")
            delta = f"{t['score'] - bs:+.1f}" if t["score"] is not None and bs is not None else "-"
            line += f" {_pct(bs)} | {delta} |"
        lines.append(line)
    lines += ["", f"Score = (wins + 0.5 x ties) / judged x 100; win/loss needs a margin over {margin:g} points "
              "(average of correctness, completeness, clarity, conciseness, 1-10).", "",
              f"**Decision:** {decision_['text']}", ""]
    if summary.get("first_position_bonus") is not None:
        lines.append(f"Position bias: the answer shown first scored {summary['first_position_bonus']:+.2f} points "
                     "against the one shown second, on average; with positions swapped, the scores above cancel it.")
    if summary.get("single_pass_items"):
        lines.append(f"{summary['single_pass_items']} item(s) were scored from one pass only "
                     "(the other verdict failed).")
    if baseline_label:
        lines.append(f"Baseline: `{baseline_label}`.")
    lines += ["", "## Cost", "", "| role | calls | prompt tokens | completion tokens | USD | price source |",
              "|---|---|---|---|---|---|"]
    for role, r in cost["roles"].items():
        lines.append(f"| {role} | {r.get('calls', 0)} | {r.get('prompt_tokens', 0)} | {r.get('completion_tokens', 0)} "
                     f"| {r['usd']:.4f} | {r['price_source']} |")
    lines.append(f"| **total** | | | | {cost['total_usd']:.4f} | |")
    return "\n".join(lines) + "\n"
