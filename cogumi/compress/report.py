"""The size/quality table of a compression run: JSON, Markdown and a bar chart.

One row per artifact actually written (the spec's "16 GB -> 520 MB" table, measured
for whatever model was run): bytes on disk, ratio to the input, bits per parameter,
held-out perplexity, change against the input, gate status and the method that ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = ("step", "artifact", "bytes", "vs_input", "bits_per_param", "ppl", "ppl_change", "gate", "method")


def size_rows(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows from the metrics of each finished step (``stages[step]`` = manifest metrics)."""
    base = stages.get("baseline", {})
    in_bytes, params, base_ppl = base.get("bytes"), base.get("params"), base.get("ppl")
    ppl_data = ppl_label(base)
    rows = []
    for step in ("baseline", "prune", "quantize", "gguf", "zstd"):
        for art in stages.get(step, {}).get("artifacts", []):
            row = {"step": step, **art}
            row["vs_input"] = round(art["bytes"] / in_bytes, 4) if in_bytes else None
            row["bits_per_param"] = round(8 * art["bytes"] / params, 3) if params else None
            if art.get("ppl") is not None and base_ppl:
                row["ppl_change"] = round(art["ppl"] / base_ppl - 1.0, 5)
            if art.get("ppl") is not None and ppl_data:
                row["ppl_data"] = ppl_data
            rows.append(row)
    return rows


def ppl_label(baseline: dict[str, Any]) -> str | None:
    """Which text the perplexities were measured on, from the baseline step's metrics."""
    if baseline.get("eval_tokens") is None:
        return None
    source = baseline.get("eval_source") or "?"
    return (f"{'the built-in' if source == 'built-in' else source} compression held-out set, "
            f"{baseline['eval_tokens']} tokens in non-overlapping windows")


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


def to_markdown(rows: list[dict[str, Any]], title: str, notes: list[str]) -> str:
    """A Markdown table of the rows, with notes underneath."""
    lines = [f"# {title}", "", "| step | artifact | size | vs input | bits/param | perplexity | change | gate | method |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        ppl = "-" if r.get("ppl") is None else f"{r['ppl']:.3f}"
        change = "-" if r.get("ppl_change") is None else f"{100 * r['ppl_change']:+.2f} %"
        vs = "-" if r.get("vs_input") is None else f"{r['vs_input']:.3f}x"
        bpp = "-" if r.get("bits_per_param") is None else f"{r['bits_per_param']:.2f}"
        gate = r.get("gate", "-") + (" · **served**" if r.get("served") else "")
        lines.append(f"| {r['step']} | `{r['artifact']}` | {_mb(r['bytes'])} | {vs} | {bpp} | {ppl} | {change} "
                     f"| {gate} | {r.get('method', '')} |")
    rejected = [f"rejected `{r['artifact']}` ({r['step']}): {r['rejected']}" for r in rows if r.get("rejected")]
    data = next((r["ppl_data"] for r in rows if r.get("ppl_data")), None)
    measured = [f"perplexity: {data}, the same for every artifact (the benchmark stage measures another text with "
                "another window, so its perplexity differs)"] if data else []
    notes = [*rejected, *measured, *notes]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Horizontal bars of artifact sizes (MB), coloured by quality-gate status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"pass": "#2e7d32", "warn": "#f9a825", "fail": "#c62828"}
    labels = [f"{r['step']}: {r['artifact']}" for r in rows]
    sizes = [r["bytes"] / 1e6 for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    bars = ax.barh(labels, sizes, color=[colours.get(r.get("gate", ""), "#607d8b") for r in rows])
    for bar, r in zip(bars, rows):
        ppl = "" if r.get("ppl") is None else f"  ppl {r['ppl']:.2f}"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {bar.get_width():,.1f} MB{ppl}",
                va="center", fontsize=8)
    ax.invert_yaxis()
    data = next((r["ppl_data"] for r in rows if r.get("ppl_data")), None)
    ax.set_xlabel("size on disk (MB)" + (f"; ppl on {data}" if data else ""))
    ax.set_title(title)
    ax.set_xlim(0, max(sizes) * 1.35 if sizes else 1)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
