"""The ``curate`` stage: skip when up to date, else run Phase 0 into ``<run>/curate/``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from cogumi.artifacts import RunDir, digest_path
from cogumi.config import CogumiConfig

STAGE = "curate"
log = logging.getLogger(__name__)


def prompt_inputs(prompts: str) -> dict[str, str]:
    """Input digests of the prompt source (HF names are recorded by name)."""
    from cogumi.curate.sources import embedded_seed_path

    if prompts.startswith("hf:"):
        return {"prompts": prompts}
    path = str(embedded_seed_path()) if prompts == "embedded" else prompts
    return {"prompts": digest_path(path)}


def curate_stage(cfg: CogumiConfig, force: bool = False,
                 notify: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or skip, when its manifest matches) the curation stage.

    Before running, it stops processes left by the local Ray of a killed earlier run and
    says when the stage's last attempt was killed (that attempt's answers are in the
    response cache, so it resumes without paying for them again).

    Args:
        notify: where to say those things (default: the log).

    Returns:
        ``{"skipped", "stage", "summary"}`` where summary is the stats of ``stats.json``.
    """
    from cogumi.curate.pipeline import run_curation
    from cogumi.curate.ray_session import reap_stale_sessions

    notify = notify or log.warning
    run = RunDir.open(cfg.run.root, cfg.run.name)
    for message in reap_stale_sessions(run):
        notify(message)
    stage = run.stage(STAGE)
    cfg_hash = cfg.section_hash("curate", "student", "judge")
    inputs = prompt_inputs(cfg.curate.prompts)
    if not force and stage.can_skip(cfg_hash, inputs):
        with stage.run.fs.open_input_stream(stage.file("stats.json")) as f:
            return {"skipped": True, "stage": stage.path, "summary": json.loads(f.read().decode())}
    with stage.begin(cfg_hash, inputs, resume_note="resuming from its cached calls") as rec:
        if rec.previous:
            notify(rec.previous)
        summary = run_curation(cfg, rec)
    return {"skipped": False, "stage": stage.path, "summary": summary}
