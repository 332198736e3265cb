"""The run report: every stage's status, method, metrics, tables and figures.

Built only from what the run wrote (manifests, ``*.md`` summaries and ``*.png``
figures inside stage folders), so every number in it was produced by the run.
Writes ``<run>/report/report.md`` and a self-contained ``report.html`` (figures
inlined as base64).
"""

from __future__ import annotations

import base64
import html
import json
import posixpath
from typing import Any

import pyarrow.fs as pafs

from cogumi.artifacts import RunDir

MAX_METRIC_ROWS = 60
REPORT_STAGE = "report"


def collect(run: RunDir) -> list[dict[str, Any]]:
    """One entry per stage with a manifest: manifest fields plus its summaries and figures."""
    entries = []
    for name in run.stages():
        if name == REPORT_STAGE:
            continue
        stage = run.stage(name)
        manifest = stage.manifest()
        # a stage's own summaries and figures sit at its top level (deeper files are checkpoints,
        # adapters and model cards)
        files = [i for i in run.fs.get_file_info(pafs.FileSelector(stage.path, recursive=False))
                 if i.type == pafs.FileType.File]
        summaries = {posixpath.relpath(i.path, stage.path): _read(run.fs, i.path)
                     for i in files if i.path.endswith(".md")}
        figures = {posixpath.relpath(i.path, stage.path): _read_bytes(run.fs, i.path)
                   for i in files if i.path.endswith(".png")}
        entries.append({"stage": name, "manifest": manifest, "summaries": summaries, "figures": figures})
    entries.sort(key=lambda e: e["manifest"].started_at)
    return entries


def flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested metrics as (dotted key, value) rows."""
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(flatten(value, name + "."))
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        elif isinstance(value, list):
            rows.append((name, json.dumps(value)[:120]))
        else:
            rows.append((name, str(value)))
    return rows


def render_markdown(run: RunDir, entries: list[dict[str, Any]]) -> str:
    """The report as Markdown (figures referenced by relative path)."""
    lines = [f"# Cogumi run report: {run.name}", "", "| stage | status | duration (s) | method |", "|---|---|---|---|"]
    for e in entries:
        m = e["manifest"]
        method = "; ".join(f"{k}: {v}" for k, v in m.method.items()) or "-"
        lines.append(f"| {e['stage']} | {m.status} | {m.duration_s if m.duration_s is not None else '-'} | {method} |")
    for e in entries:
        m = e["manifest"]
        lines += ["", f"## {e['stage']}", ""]
        if m.error:
            lines += [f"**Error:** {m.error}", ""]
        rows = flatten(m.metrics)
        if rows:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in rows[:MAX_METRIC_ROWS]]
            if len(rows) > MAX_METRIC_ROWS:
                lines.append(f"| … | {len(rows) - MAX_METRIC_ROWS} more in {e['stage']}/manifest.json |")
        for rel, text in e["summaries"].items():
            lines += ["", f"### {rel}", "", _demote_headings(text)]
        for rel in e["figures"]:
            lines += ["", f"![{e['stage']}/{rel}](../{e['stage']}/{rel})"]
    return "\n".join(lines) + "\n"


def render_html(run: RunDir, entries: list[dict[str, Any]]) -> str:
    """The report as one self-contained HTML page."""
    import markdown

    body_md = render_markdown(run, [{**e, "figures": {}} for e in entries])
    body = markdown.markdown(body_md, extensions=["tables", "fenced_code"])
    figures = []
    for e in entries:
        for rel, data in e["figures"].items():
            b64 = base64.b64encode(data).decode()
            figures.append(f'<figure><img alt="{html.escape(rel)}" src="data:image/png;base64,{b64}">'
                           f"<figcaption>{html.escape(e['stage'])}/{html.escape(rel)}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "figure{display:inline-block;margin:1em}img{max-width:520px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Cogumi report: {html.escape(run.name)}</title>"
            f"<style>{style}</style></head><body>{body}<h2>Figures</h2>{''.join(figures) or '<p>none</p>'}"
            "</body></html>")


def write_report(run: RunDir) -> dict[str, str]:
    """Write report.md and report.html under ``<run>/report/``; return their paths."""
    entries = collect(run)
    out = posixpath.join(run.path, REPORT_STAGE)
    run.fs.create_dir(out, recursive=True)
    paths = {"markdown": posixpath.join(out, "report.md"), "html": posixpath.join(out, "report.html")}
    for key, text in (("markdown", render_markdown(run, entries)), ("html", render_html(run, entries))):
        with run.fs.open_output_stream(paths[key]) as f:
            f.write(text.encode())
    return paths


def _demote_headings(text: str) -> str:
    return "\n".join("###" + line if line.startswith("#") else line for line in text.splitlines())


def _read(fs: pafs.FileSystem, path: str) -> str:
    return _read_bytes(fs, path).decode(errors="replace")


def _read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()
