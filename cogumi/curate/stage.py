"""The ``curate`` stage: skip when up to date, else run Phase 0 into ``<run>/curate/``."""

from __future__ import annotations

import json
from typing import Any

from cogumi.artifacts import RunDir, digest_path
from cogumi.config import CogumiConfig

STAGE = "curate"


def prompt_inputs(prompts: str) -> dict[str, str]:
    """Input digests of the prompt source (HF names are recorded by name)."""
    from cogumi.curate.sources import embedded_seed_path

    if prompts.startswith("hf:"):
        return {"prompts": prompts}
    path = str(embedded_seed_path()) if prompts == "embedded" else prompts
    return {"prompts": digest_path(path)}


def curate_stage(cfg: CogumiConfig, force: bool = False) -> dict[str, Any]:
    """Run (or skip, when its manifest matches) the curation stage.

    Returns:
        ``{"skipped", "stage", "summary"}`` where summary is the stats of ``stats.json``.
    """
    from cogumi.curate.pipeline import run_curation

    stage = RunDir.open(cfg.run.root, cfg.run.name).stage(STAGE)
    cfg_hash = cfg.section_hash("curate", "student", "judge")
    inputs = prompt_inputs(cfg.curate.prompts)
    if not force and stage.can_skip(cfg_hash, inputs):
        with stage.run.fs.open_input_stream(stage.file("stats.json")) as f:
            return {"skipped": True, "stage": stage.path, "summary": json.loads(f.read().decode())}
    with stage.begin(cfg_hash, inputs) as rec:
        summary = run_curation(cfg, rec)
    return {"skipped": False, "stage": stage.path, "summary": summary}
