"""Stage-level bad input without Ray: a domain with no failures, every teacher tier down."""

from __future__ import annotations

import json

import pytest

from cogumi.artifacts import RunDir
from cogumi.config import load_config
from cogumi.config_base import ModelConfig
from cogumi.errors import CogumiError
from cogumi.modifiers.config import DomainSettings, TierSettings
from cogumi.modifiers.stage import STAGE, run_modifiers_stage, stage_key

EASY = [("Reply with exactly this sentence: The answer is 4.", "4"),
        ("Reply with exactly this sentence: The answer is 10.", "10")]
HARD = [("What is 4817 times 3929?", "18926093"), ("What is 98765 minus 12349?", "86416")]
DEAD = "http://127.0.0.1:9/v1"


def _run(tmp_path, tasks, tiers=None):
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "domain": "reasoning", "prompt": p, "answer": a}) + "\n"
                            for i, (p, a) in enumerate(tasks)))
    cfg = load_config("configs/local.yaml", [f"run.root={tmp_path / 'runs'}", "run.name=deg",
                                             f"modifiers.tasks={path}", "modifiers.max_tokens=16",
                                             "modifiers.mining.use_ray=false", "modifiers.holdout_fraction=0.5"])
    cfg.modifiers.domains = {"reasoning": DomainSettings(rank=4, verify="math")}
    if tiers:
        cfg.modifiers.cascade.tiers = tiers
        cfg.modifiers.cascade.retry.max_attempts = 1
    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(STAGE)
    with stage.begin(*stage_key(cfg)) as rec:
        metrics = run_modifiers_stage(cfg, rec, run)
    return metrics, tmp_path / "runs" / "deg" / STAGE


def test_domain_without_failures_trains_no_adapter_and_says_so(tmp_path):
    metrics, root = _run(tmp_path, EASY)
    assert metrics["failures"] == 0 and metrics["adapters"] == []
    assert any("no failures, no adapter" in d for d in metrics["degraded"])
    assert any("no routing.parquet" in d for d in metrics["degraded"])
    assert not (root / "adapters").exists() and not (root / "routing.parquet").exists()
    assert "no failures, no adapter" in (root / "report.md").read_text()


def test_every_tier_down_is_a_clear_error_that_keeps_the_mining(tmp_path):
    tiers = [TierSettings(name=n, model=ModelConfig(backend="openai", model="m", base_url=DEAD))
             for n in ("a", "b", "c")]
    with pytest.raises(CogumiError, match="every teacher tier of the cascade is down") as err:
        _run(tmp_path, HARD, tiers)
    assert "base_url" in err.value.fix
    root = tmp_path / "runs" / "deg" / STAGE
    assert (root / "mined.parquet").is_file() and (root / "clusters.json").is_file()
    assert (root / "cascade.json").is_file()
