"""`cogumi benchmark` on the embedded model: lm-eval MMLU- and GSM8K-shaped tasks, code pass@1 in the
sandbox, perplexity and samples, timestamped results, a saved baseline and deltas against it; and the
same harness against an OpenAI-compatible endpoint."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cogumi.cli import app
from cogumi.config_base import ModelConfig
from cogumi.evaluate.config import HarnessConfig
from cogumi.evaluate.harness import run_harness

pytestmark = pytest.mark.integration


def _sets(root, **extra) -> list[str]:
    sets = {"run.root": str(root), "run.name": "bench",
            "evaluate.benchmark.harness.tasks": "[cogumi_mmlu,cogumi_gsm8k]", "evaluate.benchmark.harness.limit": 2,
            "evaluate.benchmark.harness.max_gen_toks": 32, "evaluate.benchmark.code.suites": "[mbpp]",
            "evaluate.benchmark.code.limit": 2, "evaluate.benchmark.code.max_tokens": 64,
            "evaluate.benchmark.perplexity.max_tokens": 160, "evaluate.benchmark.perplexity.max_length": 96,
            "evaluate.benchmark.perplexity.stride": 48, "evaluate.benchmark.perplexity.generation_tokens": 16,
            **extra}
    return sum((["--set", f"{k}={v}"] for k, v in sets.items()), [])


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_benchmark_on_the_embedded_model_with_a_baseline(tmp_path):
    runner = CliRunner()
    first = runner.invoke(app, ["benchmark", *_sets(tmp_path), "--save-baseline"])
    assert first.exit_code == 0, first.output
    assert "cogumi_mmlu acc,none" in first.output and "cogumi_gsm8k exact_match,flexible-extract" in first.output
    stage = tmp_path / "bench" / "benchmark"
    res = json.loads((stage / "results.json").read_text())
    tasks = res["harness"]["tasks"]
    assert tasks["cogumi_mmlu"]["n"] == 2 and 0.0 <= tasks["cogumi_mmlu"]["metrics"]["acc,none"] <= 1.0
    assert tasks["cogumi_gsm8k"]["n"] == 2 and "exact_match,strict-match" in tasks["cogumi_gsm8k"]["metrics"]
    assert "HFLM" in res["method"]["harness"] and "GGUF dequantised" in res["method"]["harness"]
    assert res["code"]["mbpp"]["scored"] + res["code"]["mbpp"]["errors"] == 2
    assert "sandbox_network" in res["method"]["code"]
    assert res["perplexity"]["tokens"] == 159 and res["perplexity"]["perplexity"] > 1
    assert len(res["generations"]) == 4 and all("text" in g for g in res["generations"])
    report = (stage / "report.md").read_text()
    assert "| cogumi_mmlu acc,none |" in report and "| perplexity |" in report and "Fixed-prompt generations" in report
    assert (stage / "baseline.json").is_file() and len(list((stage / "results").glob("*.json"))) == 1
    samples = [json.loads(line) for line in (stage / "samples.jsonl").read_text().splitlines()]
    assert {s["task"] for s in samples} == {"cogumi_mmlu", "cogumi_gsm8k", "mbpp"}

    # a second run (another setting) is compared with the saved baseline
    second = runner.invoke(app, ["benchmark", *_sets(tmp_path, **{
        "evaluate.benchmark.parts": "[perplexity]", "evaluate.benchmark.perplexity.stride": 96})])
    assert second.exit_code == 0, second.output
    res2 = json.loads((stage / "results.json").read_text())
    assert res2["baseline"].startswith("saved baseline") and "perplexity" in res2["deltas"]
    assert "vs baseline" in second.output and "| baseline | delta |" in (stage / "report.md").read_text()
    assert len(list((stage / "results").glob("*.json"))) >= 1


def test_unknown_task_fails_cleanly(tmp_path):
    result = CliRunner().invoke(app, ["benchmark", *_sets(tmp_path, **{
        "evaluate.benchmark.harness.tasks": "[no_such_task]", "evaluate.benchmark.parts": "[harness]"})])
    assert result.exit_code == 2 and "does not know the task" in result.output


def test_harness_against_an_openai_compatible_endpoint(fresh_openai_server):
    model = ModelConfig(backend="openai", base_url=fresh_openai_server.base_url, model="local-teacher",
                        timeout_s=300)
    res = run_harness(model, HarnessConfig(tasks=["cogumi_gsm8k", "cogumi_mmlu"], limit=1, max_gen_toks=16))
    assert res["tasks"]["cogumi_gsm8k"]["n"] == 1
    assert "cogumi_mmlu" in res["skipped"] and "logprobs" in res["skipped"]["cogumi_mmlu"]
    assert fresh_openai_server.requests and "messages" in fresh_openai_server.requests[0]
    assert fresh_openai_server.requests[0]["max_tokens"] == 16
