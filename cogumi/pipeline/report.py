"""The run report: every stage's status, method, metrics, tables and figures.

Built only from what the run wrote (manifests, ``pipeline/pipeline.json``, ``*.md``
summaries and ``*.png`` figures inside stage folders), so every number in it was
produced by the run. Writes ``<run>/report/report.md`` (figures linked relative to
it) and a self-contained ``report.html`` (figures inlined as base64). Each stage's
figures sit right after its section, with a caption naming their data and its size.

The stages of :data:`FIRST_STAGES` (the final before/after evaluation) open the report,
their ``headline`` metric in bold at the very top, above the stage table.
"""

from __future__ import annotations

import base64
import html
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from cogumi.artifacts import RunDir
from cogumi.pipeline.runner import STATUSES, manifest_status

MAX_METRIC_ROWS = 60
REPORT_STAGE = "report"
PIPELINE_STAGE = "pipeline"
FIRST_STAGES = ("final-eval",)  # rendered above the stage table, in this order
# an image in a stage's own Markdown links a file beside that Markdown: the report places figures itself
_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\((?!https?:|data:)[^)]*\)\n?")


@dataclass
class Figure:
    """One PNG of a stage, placed after the stage's section."""

    stage: str
    rel: str
    data: bytes
    caption: str


def collect(run: RunDir) -> list[dict[str, Any]]:
    """One entry per stage with a manifest: manifest fields plus its summaries and figures."""
    entries: list[dict[str, Any]] = []
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
                     for i in sorted(files, key=lambda i: i.path) if i.path.endswith(".md")}
        figures = {posixpath.relpath(i.path, stage.path): _read_bytes(run.fs, i.path)
                   for i in sorted(files, key=lambda i: i.path) if i.path.endswith(".png")}
        entries.append({"stage": name, "manifest": manifest, "summaries": summaries, "figures": figures})
    entries.sort(key=lambda e: (e["manifest"].started_at, _pipeline_order(e["stage"])))
    return entries


def _pipeline_order(stage: str) -> int:
    """Tie-break for stages started in the same second: the pipeline's order (``compress.gguf`` as compress)."""
    from cogumi.pipeline.config import STAGE_NAMES

    base = stage.split(".", 1)[0]
    return STAGE_NAMES.index(base) if base in STAGE_NAMES else len(STAGE_NAMES)


def pipeline_record(run: RunDir) -> dict[str, Any]:
    """``<run>/pipeline/pipeline.json`` (the last pipeline's status of each stage), or ``{}``."""
    try:
        return json.loads(_read(run.fs, run.stage(PIPELINE_STAGE).file("pipeline.json")))
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        return {}


def statuses(run: RunDir, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per stage: ``{stage, status, seconds, note}``.

    The pipeline's record decides the status of every stage it ran (what the console and
    pipeline.md said); a stage the pipeline did not run, or that ran again after it, gets the
    status of its manifest. Stages the pipeline gated (they have no folder) are listed too.
    """
    record = {s["name"]: s for s in pipeline_record(run).get("stages", [])}
    by_name = {e["stage"]: e for e in entries}
    pipeline = by_name.get(PIPELINE_STAGE)
    recorded_at = pipeline["manifest"].started_at if pipeline else ""
    rows = []
    for e in entries:
        m, rec = e["manifest"], record.get(e["stage"])
        if rec and m.started_at <= recorded_at:
            rows.append({"stage": e["stage"], "status": rec["status"], "seconds": m.duration_s,
                         "note": rec.get("detail", "")})
        else:
            rows.append({"stage": e["stage"], "status": manifest_status(m), "seconds": m.duration_s,
                         "note": m.metrics.get("degraded") if isinstance(m.metrics.get("degraded"), str) else ""})
    rows += [{"stage": name, "status": r["status"], "seconds": None, "note": r.get("detail", "")}
             for name, r in record.items() if name not in by_name]
    return rows


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


def blocks(run: RunDir, entries: list[dict[str, Any]]) -> list[str | Figure]:
    """The report in order: Markdown chunks and figures (each after its stage's section)."""
    first = [e for name in FIRST_STAGES for e in entries if e["stage"] == name]
    rest = [e for e in entries if e["stage"] not in FIRST_STAGES]
    manifests = {e["stage"]: e["manifest"] for e in entries}
    out: list[str | Figure] = [f"# Cogumi run report: {run.name}\n"]
    headline = next((e["manifest"].metrics.get("headline") for e in first if e["manifest"].metrics.get("headline")),
                    None)
    if headline:
        out.append(f"**{headline}**\n")
    for e in first:
        out += _section(e, manifests, summary_first=True)
    out.append("## Stages\n\n" + _stage_table(run, entries))
    out.append(_perplexity_note(run, manifests))
    for e in rest:
        out += _section(e, manifests)
    return [b for b in out if b]


def render_markdown(run: RunDir, entries: list[dict[str, Any]]) -> str:
    """The report as Markdown (figures linked relative to ``<run>/report/``)."""
    parts = []
    for b in blocks(run, entries):
        if isinstance(b, Figure):
            parts.append(f"![{_md_alt(b.caption)}](../{b.stage}/{b.rel})\n\n*Figure ({b.stage}/{b.rel}): "
                         f"{b.caption}*\n")
        else:
            parts.append(b)
    return "\n".join(parts)


def render_html(run: RunDir, entries: list[dict[str, Any]]) -> str:
    """The report as one self-contained HTML page (figures inlined)."""
    import markdown

    parts: list[str] = []
    pending: list[str] = []
    for b in [*blocks(run, entries), ""]:
        if isinstance(b, Figure):
            parts.append(markdown.markdown("\n".join(pending), extensions=["tables", "fenced_code"]))
            pending = []
            b64 = base64.b64encode(b.data).decode()
            parts.append(f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{b64}">'
                         f"<figcaption>{html.escape(b.caption)} <small>({html.escape(b.stage)}/"
                         f"{html.escape(b.rel)})</small></figcaption></figure>")
        else:
            pending.append(b)
    parts.append(markdown.markdown("\n".join(pending), extensions=["tables", "fenced_code"]))
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "figure{margin:1em 0}img{max-width:720px}figcaption{color:#444;font-size:90%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Cogumi report: {html.escape(run.name)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


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


# ---------------------------------------------------------------- parts


def _stage_table(run: RunDir, entries: list[dict[str, Any]]) -> str:
    methods = {e["stage"]: "; ".join(f"{k}: {v}" for k, v in e["manifest"].method.items()) for e in entries}
    rows = statuses(run, entries)
    lines = ["| stage | status | duration (s) | note | method |", "|---|---|---|---|---|"]
    for r in rows:
        seconds = "-" if r["seconds"] is None else r["seconds"]
        lines.append(f"| {r['stage']} | {r['status']} | {seconds} | {_cell(r['note'] or '-')} | "
                     f"{_cell(methods.get(r['stage']) or '-')} |")
    used = dict.fromkeys(r["status"] for r in rows)
    lines += ["", "Statuses: " + "; ".join(f"**{s}** {STATUSES[s]}" for s in used if s in STATUSES) + "."]
    return "\n".join(lines) + "\n"


def _section(e: dict[str, Any], manifests: dict[str, Any], summary_first: bool = False) -> list[str | Figure]:
    """A stage's heading, error, metrics table and summaries (summaries first for the opening stages)."""
    m = e["manifest"]
    head = [f"## {e['stage']}", ""] + ([f"**Error:** {m.error}", ""] if m.error else [])
    metrics: list[str] = []
    rows = flatten(m.metrics)
    if rows:
        metrics += ["", "| metric | value |", "|---|---|"]
        metrics += [f"| {k} | {_cell(v)} |" for k, v in rows[:MAX_METRIC_ROWS]]
        if len(rows) > MAX_METRIC_ROWS:
            metrics.append(f"| … | {len(rows) - MAX_METRIC_ROWS} more in {e['stage']}/manifest.json |")
    summaries: list[str] = []
    for rel, text in e["summaries"].items():
        summaries += ["", f"### {rel}", "", _demote_headings(_IMAGE_LINK.sub("", text))]
    lines = head + (summaries + metrics if summary_first else metrics + summaries)
    out: list[str | Figure] = ["\n".join(lines) + "\n"]
    out += [Figure(e["stage"], rel, data, caption(e["stage"], rel, manifests)) for rel, data in e["figures"].items()]
    return out


def _perplexity_note(run: RunDir, manifests: dict[str, Any]) -> str:
    """Why the benchmark's perplexity and compression's baseline perplexity differ (when both exist)."""
    bench, base = manifests.get("benchmark"), manifests.get("compress.baseline")
    if not (bench and base and "perplexity" in bench.metrics and "ppl" in base.metrics):
        return ""
    try:
        ppl = json.loads(_read(run.fs, run.stage("benchmark").file("results.json"))).get("perplexity", {})
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        ppl = {}
    b = base.metrics
    return ("Two perplexities, two data sets: benchmark's **perplexity "
            f"{bench.metrics['perplexity']:.2f}** is the trained student on the benchmark held-out text "
            f"(sliding window {ppl.get('window', '?')} / stride {ppl.get('stride', '?')}, {ppl.get('tokens', '?')} "
            f"tokens); compress.baseline's **ppl {b['ppl']:.2f}** is the model compression received, on the "
            f"compression quality set ({b.get('eval_source', '?')}, {b.get('eval_tokens', '?')} tokens, "
            f"{base.method.get('eval', 'non-overlapping windows')}). Compare each only with itself.\n")


# ---------------------------------------------------------------- captions


def caption(stage: str, rel: str, manifests: dict[str, Any]) -> str:
    """What a figure shows, on which data and how many items (from the manifests; never raises)."""
    m = manifests[stage].metrics
    for pattern, fn in CAPTIONS:
        if re.fullmatch(pattern, rel):
            try:
                return fn(stage, rel, m, manifests)
            except (KeyError, TypeError, ValueError, AttributeError):
                break
    return f"{stage}: {rel}"


def _curate_cap(stage: str, rel: str, m: dict[str, Any], _: dict[str, Any]) -> str:
    return (f"judge scores of the judged rows and kept rows by domain: {m['rows_ok']} kept of "
            f"{m['rows_input']} input rows")


def _loss_cap(stage: str, rel: str, m: dict[str, Any], _: dict[str, Any]) -> str:
    return (f"{stage} loss curve: {m['train_examples']} train / {m['val_examples']} val examples, "
            f"{m['global_step']} steps")


def _trials_cap(stage: str, rel: str, m: dict[str, Any], _: dict[str, Any]) -> str:
    return f"validation loss per checkpoint of each trial: {m['trials']} trials"


def _size_cap(stage: str, rel: str, m: dict[str, Any], manifests: dict[str, Any]) -> str:
    base = manifests["compress.baseline"].metrics
    return (f"size on disk of {len(m['rows'])} compression artifacts; perplexity on the compression held-out "
            f"set ({base['eval_source']}, {base['eval_tokens']} tokens)")


def _reliability_cap(stage: str, rel: str, m: dict[str, Any], _: dict[str, Any]) -> str:
    mode = rel[len("reliability_"):-len(".png")]
    return f"reliability diagram of the {mode} router: test split, {m['test_rows']} of {m['rows']} routing rows"


def _sweep_cap(stage: str, rel: str, m: dict[str, Any], _: dict[str, Any]) -> str:
    return f"accuracy and modifier share per confidence threshold: test split, {m['test_rows']} of {m['rows']} rows"


CAPTIONS: list[tuple[str, Callable[[str, str, dict[str, Any], dict[str, Any]], str]]] = [
    (r"report\.png", _curate_cap), (r"loss_curve\.png", _loss_cap), (r"trials\.png", _trials_cap),
    (r"size_chart\.png", _size_cap), (r"reliability_\w+\.png", _reliability_cap), (r"sweep\.png", _sweep_cap)]


# ---------------------------------------------------------------- helpers


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_alt(text: str) -> str:
    return text.replace("[", "(").replace("]", ")")


def _demote_headings(text: str) -> str:
    return "\n".join("###" + line if line.startswith("#") else line for line in text.splitlines())


def _read(fs: pafs.FileSystem, path: str) -> str:
    return _read_bytes(fs, path).decode(errors="replace")


def _read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()
