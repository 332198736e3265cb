"""Threshold sweep: answer quality against modifier use, so an operator can pick the trade-off.

At threshold ``t`` a prompt goes to its modifier when the calibrated confidence in the
base answer is below ``t``. Quality is the mean score of the answer each prompt gets:
``base_score`` / ``modifier_score`` when the routing set has them, otherwise the
label-only assumption ``base = 1 - label`` and ``modifier = 1`` (a modifier answer is
never worse than the base's; the table says which was used).
"""

from __future__ import annotations

import io

import numpy as np


def quality_scores(labels: np.ndarray, base_score: np.ndarray | None = None,
                   modifier_score: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-row (base quality, modifier quality, description of where they came from)."""
    y = np.asarray(labels, float)
    if base_score is not None and modifier_score is not None:
        return np.asarray(base_score, float), np.asarray(modifier_score, float), "routing-set scores"
    return 1.0 - y, np.ones_like(y), "label-only: base = 1 - label, modifier = 1"


def sweep(confidence: np.ndarray, labels: np.ndarray, base_q: np.ndarray, mod_q: np.ndarray,
          points: int = 21) -> list[dict[str, float]]:
    """Quality, modifier share and routing accuracy at ``points`` thresholds in [0, 1].

    Args:
        confidence: calibrated confidence that the base answer suffices (``1 - P(modifier better)``).
        labels: 1 where the modifier was better.
        base_q, mod_q: per-row quality of each route.
        points: thresholds ``linspace(0, 1, points)``.

    Returns:
        Rows ``{threshold, modifier_share, quality, accuracy}``.
    """
    conf, y = np.asarray(confidence, float), np.asarray(labels, int)
    out = []
    for t in np.linspace(0.0, 1.0, points):
        use = conf < t
        out.append({"threshold": round(float(t), 4),
                    "modifier_share": float(use.mean()) if len(use) else 0.0,
                    "quality": float(np.where(use, mod_q, base_q).mean()) if len(use) else 0.0,
                    "accuracy": float((use.astype(int) == y).mean()) if len(y) else 0.0})
    return out


def recommend(table: list[dict[str, float]], tolerance: float) -> float:
    """The threshold with the least modifier use whose quality is within ``tolerance`` of the best."""
    best = max(r["quality"] for r in table)
    ok = [r for r in table if r["quality"] >= best - tolerance]
    return min(ok, key=lambda r: (r["modifier_share"], r["threshold"]))["threshold"]


def sweep_markdown(tables: dict[str, list[dict[str, float]]], quality_source: str, split: str,
                   marks: dict[str, float]) -> str:
    """A Markdown table per mode (``*`` marks the operating threshold, ``r`` the recommended one)."""
    lines = [f"# Router threshold sweep ({split})", "",
             f"Quality: {quality_source}. A prompt uses its modifier when confidence < threshold.",
             f"Operating threshold: {marks.get('operating')}; recommended (validation): {marks.get('recommended')}.",
             ""]
    for mode, table in tables.items():
        lines += [f"## {mode}", "", "| threshold | modifier use | quality | routing accuracy |",
                  "|---:|---:|---:|---:|"]
        for r in table:
            tag = ("*" if abs(r["threshold"] - marks.get("operating", -1)) < 1e-9 else "") + \
                  ("r" if abs(r["threshold"] - marks.get("recommended", -1)) < 1e-9 else "")
            lines.append(f"| {r['threshold']:.2f}{tag} | {r['modifier_share']:.1%} | {r['quality']:.3f} | "
                         f"{r['accuracy']:.1%} |")
        lines.append("")
    return "\n".join(lines)


def sweep_plot(tables: dict[str, list[dict[str, float]]], quality_source: str,
               marks: dict[str, float]) -> bytes:
    """PNG: quality against modifier use for each mode, thresholds annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for mode, table in tables.items():
        xs, ys = [r["modifier_share"] for r in table], [r["quality"] for r in table]
        ax.plot(xs, ys, marker=".", label=mode)
        for r in table:
            for name, sym in (("operating", "*"), ("recommended", "D")):
                if abs(r["threshold"] - marks.get(name, -1)) < 1e-9:
                    ax.plot(r["modifier_share"], r["quality"], sym, ms=10 if sym == "*" else 6,
                            label=f"{mode} {name} t={r['threshold']:.2f}")
    ax.set_xlabel("share of prompts sent to a modifier")
    ax.set_ylabel("answer quality")
    ax.set_title(f"Quality vs modifier use ({quality_source})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
