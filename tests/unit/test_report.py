"""The run report is built from what stages wrote, and only from that."""

from __future__ import annotations

import io

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
