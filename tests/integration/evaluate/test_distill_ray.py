"""Phase 1C on Ray Data with the embedded model: each category's strategy, training JSONL, statistics."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cogumi.cli import app
from cogumi.schema import normalise_record

pytestmark = pytest.mark.integration


def test_distill_over_ray_data(ray_local, tmp_path):
    sets = {"run.root": str(tmp_path), "run.name": "d", "evaluate.distill.prompts": "bundled",
            "evaluate.distill.limit": 1, "evaluate.distill.n_samples": 3, "evaluate.distill.max_tokens": 40,
            "evaluate.distill.categories": "{math: {}, reasoning: {generate_temp: 0.1, generate_sample: true, "
                                           "keep: vote}, creative: {generate_temp: 0.7, generate_sample: true, "
                                           "train_temp: 0.3, keep: diverse}}",
            "evaluate.ray.batch_size": 2}
    args = sum((["--set", f"{k}={v}"] for k, v in sets.items()), [])
    result = CliRunner().invoke(app, ["distill", *args])
    assert result.exit_code == 0, result.output
    stage = tmp_path / "d" / "distill"
    stats = json.loads((stage / "stats.json").read_text())
    assert set(stats) == {"math", "reasoning", "creative"}
    assert stats["math"]["strategy"] == "verified" and stats["reasoning"]["strategy"] == "vote"
    assert stats["creative"]["strategy"] == "diverse"
    samples = {r["id"]: r for r in map(json.loads, (stage / "samples.jsonl").read_text().splitlines())}
    assert len(json.loads(samples["math-1"]["samples"])) == 1  # greedy: one answer
    assert len(json.loads(samples["reasoning-1"]["samples"])) == 3  # voted: n samples
    assert samples["reasoning-1"]["agreement"] is not None
    assert samples["math-1"]["verified"] in (True, False)  # checked against the bundled answer
    rows = [json.loads(line) for line in (stage / "distilled.jsonl").read_text().splitlines() if line]
    assert len(rows) == sum(s["examples"] for s in stats.values())
    for row in rows:
        normalise_record(row)  # training can read every example
    manifest = json.loads((stage / "manifest.json").read_text())
    assert "Ray Data" in manifest["method"]["ray"] and manifest["metrics"]["prompts"] == 3
    # unchanged: up to date
    again = CliRunner().invoke(app, ["distill", *args])
    assert again.exit_code == 0 and "up to date" in again.output
