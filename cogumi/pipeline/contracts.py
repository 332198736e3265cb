"""What a pipeline stage hands to the runner: a typed :class:`StageResult` instead of a loose dict.

Each phase's entry function (``curate_stage``, ``run_train``, ``compare_stage``...) still
returns its own summary dict, written for its CLI command; the pipeline wraps it here
with the stage's name, status, named outputs (locations in the run, by the producers'
output-name constants) and the metrics and method its manifest recorded. The runner,
the progress lines and the pipeline record read these fields, never the summary's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cogumi.artifacts import RunDir, stage_ref

Status = Literal["ran", "skipped", "gated", "degraded", "rejected", "failed", "unfinished"]

#: Every status a stage can have, with what it means: the pipeline summary, pipeline.md/json and
#: the run report all use these words.
STATUSES: dict[str, str] = {
    "ran": "ran and wrote new outputs",
    "skipped": "up to date: its manifest matched, nothing ran",
    "gated": "not needed in this run (the note says why)",
    "degraded": "finished, but with a fallback (the note says which)",
    "rejected": "ran, but a quality gate rejected its output",
    "failed": "stopped with an error",
    "unfinished": "started and never finished (interrupted)",
}


@dataclass
class StageResult:
    """One stage's result in a pipeline run.

    Attributes:
        stage: the stage's name (its folder in the run directory).
        skipped: its manifest matched, nothing ran.
        status: a status the stage names itself (e.g. ``rejected``); None lets
            :meth:`final_status` derive it from ``skipped`` and ``degraded``.
        degraded: the fallback or gate note ("" when none).
        headline: one line saying what it produced ("" lets the runner derive a key figure).
        outputs: output name (the producer's constant) -> its location (local path or URI).
        metrics: the metrics its manifest recorded.
        method: what really ran, from its manifest.
        summary: the phase function's own summary (for key figures and the CLI).
    """

    stage: str
    skipped: bool = False
    status: Status | None = None
    degraded: str = ""
    headline: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    method: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def final_status(self) -> str:
        """skipped, the status the stage named, degraded (a fallback note) or ran."""
        if self.skipped:
            return "skipped"
        if self.status is not None:
            return self.status
        return "degraded" if self.degraded else "ran"

    @classmethod
    def from_summary(cls, stage: str, summary: dict[str, Any], run: RunDir | None = None,
                     outputs: tuple[str, ...] = ()) -> StageResult:
        """Wrap a phase function's summary; metrics and method come from ``stage``'s manifest in ``run``.

        Args:
            outputs: output names (the producer's constants) to locate in ``run`` as ``stage:<stage>/<name>``.

        Raises:
            ValueError: the summary names a status that is not one of :data:`STATUSES`.
        """
        status = summary.get("status")
        if status is not None and status not in STATUSES:
            raise ValueError(f"stage '{stage}' returned the unknown status {status!r} (known: {', '.join(STATUSES)})")
        manifest = run.stage(stage).manifest() if run is not None else None
        located = {name: run.resolve(stage_ref(stage, name)).uri() for name in outputs} if run is not None else {}
        return cls(stage=stage, skipped=bool(summary.get("skipped")), status=status,
                   degraded=str(summary.get("degraded") or ""), headline=str(summary.get("headline") or ""),
                   outputs=located,
                   metrics=dict(manifest.metrics) if manifest else dict(summary.get("metrics") or {}),
                   method=dict(manifest.method) if manifest else dict(summary.get("method") or {}),
                   summary=summary)
