"""One domain end to end on local Ray: mine, cluster, cascade (local endpoints), adapter, validation, routing set."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from cogumi.artifacts import RunDir
from cogumi.config import load_config
from cogumi.config_base import ModelConfig
from cogumi.modifiers.config import DomainSettings, TierSettings
from cogumi.modifiers.stage import STAGE, run_modifiers_stage, stage_key
from cogumi.route.data import read_routing_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HARD = [("What is 4817 times 3929?", "18926093"), ("What is 98765 minus 12349?", "86416"),
        ("What is 7 + 5?", "12"), ("What is 123 times 456?", "56088"), ("What is 2 + 2?", "4")]


def _config(tmp_path, server):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"id": f"r{i}", "domain": "reasoning", "prompt": p + " The answer is",
                                         "answer": a}) + "\n" for i, (p, a) in enumerate(HARD)))
    cfg = load_config("configs/local.yaml", [f"run.root={tmp_path / 'runs'}", "run.name=mod",
                                             f"modifiers.tasks={tasks}", "modifiers.max_tokens=24",
                                             "modifiers.tasks_per_domain=5",
                                             "modifiers.holdout_fraction=0.4", "modifiers.adapter.max_steps=1",
                                             "train.max_seq_length=256"])
    mc = cfg.modifiers
    mc.domains = {"reasoning": DomainSettings(rank=4, verify="math")}
    url = server.base_url
    dead = ModelConfig(backend="openai", base_url="http://127.0.0.1:9/v1", model="x")
    mc.cascade.tiers = [TierSettings(name="tier1-cheap", model=dead, price_out_per_mtok=0.5),
                        TierSettings(name="tier2-mid", model=ModelConfig(backend="openai", base_url=url,
                                                                         model="local-teacher"), max_tokens=16,
                                     price_out_per_mtok=2.0),
                        TierSettings(name="tier3-frontier", model=ModelConfig(backend="openai", base_url=url,
                                                                              model="local-teacher"),
                                     max_tokens=24, price_out_per_mtok=15.0)]
    mc.cascade.retry.max_attempts = 1
    return cfg


def test_one_domain_end_to_end(tmp_path, ray_local, fresh_openai_server):
    cfg = _config(tmp_path, fresh_openai_server)
    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(STAGE)
    cfg_hash, inputs = stage_key(cfg)
    with stage.begin(cfg_hash, inputs) as rec:
        metrics = run_modifiers_stage(cfg, rec, run)
    root = tmp_path / "runs" / "mod" / STAGE

    mined = pq.read_table(root / "mined.parquet").to_pylist()
    assert len(mined) == len(HARD) and {r["split"] for r in mined} == {"mine", "holdout"}
    assert metrics["failures"] >= 1 and metrics["failures_per_domain"]["reasoning"] == metrics["failures"]
    clusters = json.loads((root / "clusters.json").read_text())
    assert clusters["k_used"] == min(8, metrics["failures"])
    assert sum(c["size"] for c in clusters["clusters"]) == metrics["failures"]
    if metrics["failures"] < 8:
        assert "clamped" in clusters["note"] and any("clamped" in d for d in metrics["degraded"])

    cascade = json.loads((root / "cascade.json").read_text())
    assert "tier1-cheap" in cascade["down"] and any("tier1-cheap down" in d for d in metrics["degraded"])
    assert cascade["kept"] == metrics["failures"]
    assert sum(t["share"] for t in cascade["tiers"]) == pytest.approx(1.0, abs=1e-3)
    assert cascade["teacher_cost_usd"] > 0

    adapter = root / "adapters" / "reasoning"
    assert (adapter / "adapter_model.safetensors").stat().st_size > 0
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    assert (adapter / "adapter.gguf").read_bytes()[:4] == b"GGUF"

    val = json.loads((root / "validation.json").read_text())["reasoning"]["holdout"]
    assert val["tasks"] == 2 and val["delta"] == pytest.approx(val["adapter_accuracy"] - val["base_accuracy"])
    routing = read_routing_set(str(root / "routing.parquet"))
    assert len(routing) == len(HARD) and {r["domain"] for r in routing} == {"reasoning"}
    assert all(r["label"] == int(r["modifier_score"] > r["base_score"]) for r in routing)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["metrics"]["adapters"] == ["reasoning"]
    assert "ray data" in manifest["method"]["mining"] and "kmeans" in manifest["method"]["clustering"]
    assert "Teacher cascade" in (root / "report.md").read_text()
