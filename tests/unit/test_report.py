"""The run report is built from what stages wrote, and only from that."""

from __future__ import annotations

import io
import re

from cogumi.artifacts import RunDir
from cogumi.pipeline.report import write_report


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2, 3], [3, 1, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_report_has_every_stage_metric_summary_and_figure(tmp_path):
    run = RunDir.open(str(tmp_path), "r1")
    with run.stage("curate").begin("h") as rec:
        rec.metrics.update({"rows": {"ok": 17, "filtered": 3}, "cost_usd": 0.0123})
        rec.method["teacher"] = "llamacpp"
        rec.write_text("report.md", "# Curation\n\n| domain | kept |\n|---|---|\n| math | 4 |\n")
    with run.stage("train").begin("h") as rec:
        rec.metrics["final_loss"] = 1.2345
        with run.fs.open_output_stream(rec.path("loss.png")) as f:
            f.write(_png())
    paths = write_report(run)
    md = (tmp_path / "r1" / "report" / "report.md").read_text()
    html = (tmp_path / "r1" / "report" / "report.html").read_text()
    assert paths["html"].endswith("report.html")
    assert "| rows.ok | 17 |" in md and "| cost_usd | 0.0123 |" in md and "teacher: llamacpp" in md
    assert "| math | 4 |" in md and "../train/loss.png" in md
    assert "<td>17</td>" in html and "data:image/png;base64," in html and "<table>" in html
    assert md.index("## curate") < md.index("## train")


def test_failed_stage_shows_its_error(tmp_path):
    run = RunDir.open(str(tmp_path), "r1")
    try:
        with run.stage("compress").begin("h"):
            raise RuntimeError("disk full")
    except RuntimeError:
        pass
    write_report(run)
    md = (tmp_path / "r1" / "report" / "report.md").read_text()
    assert "| compress | failed |" in md and "disk full" in md


def _stage(run: RunDir, name: str, metrics: dict, files: dict[str, str | bytes]) -> None:
    with run.stage(name).begin("h") as rec:
        rec.metrics.update(metrics)
        for rel, content in files.items():
            with run.fs.open_output_stream(rec.path(rel)) as f:
                f.write(content.encode() if isinstance(content, str) else content)


def test_figures_sit_after_their_stage_with_captions_and_links_that_resolve(tmp_path):
    run = RunDir.open(str(tmp_path), "r1")
    _stage(run, "curate", {"rows_input": 16, "rows_ok": 12},
           {"report.md": "# Curation report\n\nkept 12\n\n![report](report.png)\n", "report.png": _png()})
    _stage(run, "train", {"train_examples": 14, "val_examples": 2, "global_step": 4}, {"loss_curve.png": _png()})
    _stage(run, "router", {"rows": 40, "test_rows": 8}, {"reliability_cascade.png": _png()})
    write_report(run)
    md = (tmp_path / "r1" / "report" / "report.md").read_text()
    html = (tmp_path / "r1" / "report" / "report.html").read_text()
    # each figure comes after its own section's heading and before the next section
    for stage, rel, after in (("curate", "report.png", "## train"), ("train", "loss_curve.png", "## router")):
        assert md.index(f"## {stage}") < md.index(f"(../{stage}/{rel})") < md.index(after)
    assert "12 kept of 16 input rows" in md and "loss curve: 14 train / 2 val examples, 4 steps" in md
    assert "test split, 8 of 40 routing rows" in md
    # every image link resolves from report/ (the curate summary's own link to report.png is not copied)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 3 and all((tmp_path / "r1" / "report" / link).resolve().is_file() for link in links)
    assert 'src="report.png"' not in html and html.count("data:image/png;base64,") == 3
    assert html.index("<h2>curate</h2>") < html.index("data:image/png") < html.index("<h2>train</h2>")
    assert "loss curve: 14 train / 2 val examples" in html


def test_final_eval_opens_the_report_with_its_headline_in_bold(tmp_path):
    run = RunDir.open(str(tmp_path), "r1")
    _stage(run, "curate", {"rows_ok": 3}, {})
    _stage(run, "final-eval", {"headline": "served system beats the starting model on 3 of 4 suites"},
           {"report.md": "# Final evaluation\n\n| suite | before | after |\n|---|---|---|\n| math | 0.1 | 0.3 |\n"})
    write_report(run)
    md = (tmp_path / "r1" / "report" / "report.md").read_text()
    lines = md.splitlines()
    assert lines[0].startswith("# Cogumi run report") and lines[2] == \
        "**served system beats the starting model on 3 of 4 suites**"
    assert md.index("| math | 0.1 | 0.3 |") < md.index("| stage | status |") < md.index("## curate")
    assert md.count("## final-eval") == 1
    html = (tmp_path / "r1" / "report" / "report.html").read_text()
    assert html.index("<strong>served system beats") < html.index("<td>math</td>") < html.index("<th>stage</th>")


def test_two_perplexities_are_labelled_with_their_data(tmp_path):
    import json

    run = RunDir.open(str(tmp_path), "r1")
    _stage(run, "benchmark", {"perplexity": 24.4}, {"results.json": json.dumps(
        {"perplexity": {"perplexity": 24.4, "tokens": 900, "window": 256, "stride": 128}})})
    with run.stage("compress.baseline").begin("h") as rec:
        rec.metrics.update({"ppl": 33.0, "eval_tokens": 2048, "eval_source": "built-in"})
        rec.method["eval"] = "transformers fp32 perplexity, 8 windows of <= 256"
    write_report(run)
    md = (tmp_path / "r1" / "report" / "report.md").read_text()
    assert "**perplexity 24.40**" in md and "sliding window 256 / stride 128, 900 tokens" in md
    assert "**ppl 33.00**" in md and "(built-in, 2048 tokens, transformers fp32 perplexity, 8 windows of <= 256)" in md
