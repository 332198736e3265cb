"""`cogumi pipeline` end to end on the embedded default, as a user runs it (its own local Ray, a subprocess).

A reduced configs/local.yaml (fewer prompts, steps and tasks) keeps it to minutes; every
stage still really runs: curation, QLoRA + merge, lm-eval/code/perplexity, the judge
comparison, 1B retraining on its failures, GGUF + zstd, modifiers, router, Serve + probe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cogumi.artifacts import digest_path
from tests.support.openai_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]
REPO = Path(__file__).resolve().parents[2]

SMALL = [
    "curate.limit=6",
    "train.max_steps=2", "train.eval_steps=1", "train.save_steps=1", "train.val_fraction=0.2",
    "evaluate.benchmark.harness.limit=2", "evaluate.benchmark.code.limit=2",
    "evaluate.benchmark.parts=[harness,code,perplexity]",
    "evaluate.compare.samples_per_category=1", "evaluate.compare.answer_tokens=48",
    "pipeline.phase_1b.max_steps=1", "pipeline.distill_when=never",
    "compress.prune.enabled=false", "compress.quantize.enabled=false", "compress.gguf.types=[Q5_K_M]",
    "compress.calibration.num_samples=4",
    "modifiers.domains={code: {rank: 4, verify: code}, reasoning: {rank: 4, verify: math}}",
    "modifiers.tasks_per_domain=5",
    "modifiers.adapter.max_steps=1", "modifiers.clusters=2",
    "router.data.proxy_prompts=40",
    "pipeline.gate.math_items=4", "pipeline.gate.code_items=2", "modifiers.adapter.gate_items=4",
    "pipeline.final_eval.math_items=4", "pipeline.final_eval.code_items=2", "pipeline.final_eval.code_max_tokens=64",
]


def _pipeline(tmp_path: Path, port: int, *extra: str) -> subprocess.CompletedProcess:
    sets = [a for s in [*SMALL, f"run.root={tmp_path}", "run.name=e2e", f"serve.port={port}"] for a in ("--set", s)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "cogumi", "pipeline", "--config", "configs/local.yaml", *sets,
                           "--no-serve", *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=3300)


def test_pipeline_runs_every_phase_then_skips_them_all(tmp_path):
    port = free_port()
    first = _pipeline(tmp_path, port)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-6000:]
    run = tmp_path / "e2e"
    outcome = {s["name"]: s for s in json.loads((run / "pipeline" / "pipeline.json").read_text())["stages"]}
    for name in ("curate", "benchmark", "compare", "compress", "modifiers", "final-eval"):
        assert outcome[name]["status"] == "ran", outcome[name]
    assert outcome["router"]["status"] in ("ran", "degraded"), outcome["router"]
    assert outcome["distill"]["status"] == "gated" and outcome["train-1c"]["status"] == "gated"

    # promotion: each training stage is promoted or rejected by its recorded gate, never silently
    def promoted(stage: str) -> bool:
        gate = json.loads((run / f"gate.{stage}" / "manifest.json").read_text())["metrics"]
        assert outcome[stage]["status"] == ("ran" if gate["promoted"] else "rejected"), (outcome[stage], gate)
        return gate["promoted"]

    latest = "train" if promoted("train") else None
    failures = (run / "compare" / "failures.jsonl").read_text().strip()
    if failures and latest:
        latest = "train-1b" if promoted("train-1b") else latest
    else:
        assert outcome["train-1b"]["status"] == "gated"

    # the chain: compression consumed the newest *promoted* model (the starting one when none was)
    compress_in = json.loads((run / "compress.baseline" / "manifest.json").read_text())
    if latest:
        assert compress_in["inputs"]["model"] == digest_path(str(run / latest / "merged"))
    gguf = json.loads((run / "compress.gguf" / "manifest.json").read_text())["metrics"]
    served = gguf["served"]
    row = next(a for a in gguf["artifacts"] if a["artifact"] == served)
    assert row["gate"] == "pass" and (run / "compress.gguf" / served).is_file()
    router = "".join(p.read_text() for p in (run / "router").glob("*.json"))
    router_degraded = outcome["router"]["status"] == "degraded"
    assert router_degraded == ("no router trained" in outcome["router"]["detail"])
    if not router_degraded:
        # built from the modifiers' routing set, or (tiny model: too few rows) the recorded proxy fallback
        assert ('"kind": "modifiers"' in router or "fallback: the modifiers' set" in router), router[:2000]
        assert f"compress.gguf/{served}" in router
    probe = json.loads((run / "serve" / "probe.json").read_text())
    assert probe["answered"] == probe["requests"] > 0 and probe["latency_ms_median"] > 0
    assert all(r["answer"].strip() for r in probe["rows"]), probe["rows"]  # the served model still talks
    serve_method = json.loads((run / "serve" / "manifest.json").read_text())["method"]
    assert served in serve_method["base"]
    mods = json.loads((run / "modifiers" / "manifest.json").read_text())["metrics"]
    assert serve_method["adapters"].endswith("modifiers/adapters") == bool(mods["adapters"])
    assert serve_method["router"] == ("built-in" if router_degraded else str(run / "router"))

    # the closing comparison: start vs served, with sample sizes and intervals, first in the report
    final = json.loads((run / "final-eval" / "manifest.json").read_text())["metrics"]
    assert final["verdict"] in ("better", "equal within noise", "worse", "mixed")
    assert {r["metric"].split(":")[0] for r in final["results"]} == {"text", "math", "code"}
    assert all(r["n"] >= 2 and r["low"] <= r["diff"] <= r["high"] for r in final["results"]), final["results"]
    assert final["headline"] in first.stdout and f"cogumi serve --run {run}" in first.stdout

    report = (run / "report" / "report.md").read_text()
    assert report.index(final["headline"]) < report.index("## Stages")
    for section in ("## curate", "## train", "## benchmark", "## compare", "## compress.gguf", "## modifiers",
                    "## router", "## serve"):
        assert section in report, section
    assert "data:image/png;base64," in (run / "report" / "report.html").read_text()

    second = _pipeline(tmp_path, port)
    assert second.returncode == 0, second.stderr[-4000:]
    again = json.loads((run / "pipeline" / "pipeline.json").read_text())
    redone = {s["name"] for s in again["stages"] if s["status"] not in ("skipped", "gated")}
    assert redone == set(), again  # an untrainable routing set is a recorded result: skipped too
    assert "probe up to date" in second.stdout
