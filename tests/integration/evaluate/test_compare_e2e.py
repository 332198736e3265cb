"""Phase 1B end to end: the embedded model plays student, reference and judge (the last two over real HTTP).

The student answers in Ray Data actors (llama.cpp); the reference model and the judge
are the local OpenAI-compatible server. A re-validation run (new label, baseline =
the first run) must make zero reference calls: the answers come from the cache.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cogumi.cli import app
from cogumi.schema import normalise_record

pytestmark = pytest.mark.integration


def _sets(server, root: Path, ray_on: bool = True) -> list[str]:
    return [f"run.root={root}", "run.name=cmp", f"evaluate.ray.enabled={str(ray_on).lower()}",
            "evaluate.ray.threads=1", "evaluate.ray.batch_size=2",
            "evaluate.compare.categories=[math,code]", "evaluate.compare.samples_per_category=1",
            "evaluate.compare.answer_tokens=32", "evaluate.compare.judge_tokens=96",
            "judge.backend=openai", f"judge.base_url={server.base_url}", "judge.model=judge-model",
            "judge.timeout_s=300",
            "evaluate.compare.reference.backend=openai", f"evaluate.compare.reference.base_url={server.base_url}",
            "evaluate.compare.reference.model=reference-model", "evaluate.compare.reference.timeout_s=300"]


def _cli(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_compare_and_revalidation_reuse_reference_answers(fresh_openai_server, ray_local, tmp_path):
    server = fresh_openai_server
    sets = sum((["--set", s] for s in _sets(server, tmp_path)), [])
    out = _cli(["compare", *sets])
    assert "decision:" in out.output and "Phase 1C" in out.output
    stage = tmp_path / "cmp" / "compare"
    results = json.loads((stage / "results.json").read_text())
    overall = results["summary"]["overall"]
    assert overall["total"] == 2 and overall["win"] + overall["loss"] + overall["tie"] + overall["error"] == 2
    assert results["decision"]["phase_1c"] in ("skip", "optional", "required", "undecided")
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["metrics"]["decision"] == results["decision"]["text"]
    assert "positions swapped" in manifest["method"]["judge"] and "Ray Data" in manifest["method"]["local"]
    models = Counter(r["model"] for r in server.requests)
    assert models["reference-model"] >= 2 and models["judge-model"] >= 2
    report = (stage / "report.md").read_text()
    assert "| math |" in report and "| code |" in report and "**Decision:**" in report and "## Cost" in report
    assert (stage / "intermediate" / "math_intermediate.json").is_file()
    items = [json.loads(line) for line in (stage / "items.jsonl").read_text().splitlines()]
    failures = [json.loads(line) for line in (stage / "failures.jsonl").read_text().splitlines() if line]
    lost = [i for i in items if i["outcome"] in ("loss", "tie")]
    assert len(failures) == len(lost)
    for f in failures:  # the reference answer is the training target, and training can read it
        item = next(i for i in items if i["id"] == f["metadata"]["id"])
        assert f["output"] == item["reference_answer"].strip() and f["instruction"] == item["prompt"]
        assert normalise_record(f)["response"] == f["output"]
        assert (stage / "failures" / f"{item['category']}_failures_from_benchmark.jsonl").is_file()

    # re-validation: another label, the first run as baseline -> judge calls only
    server.requests.clear()
    out = _cli(["compare", *sets, "--label", "compare-1b", "--baseline", "compare"])
    assert "0 new calls" in out.output
    assert Counter(r["model"] for r in server.requests)["reference-model"] == 0
    second = json.loads((tmp_path / "cmp" / "compare-1b" / "results.json").read_text())
    assert second["reference_cache"]["new_calls"] == 0 and second["reference_cache"]["reused"] == 2
    assert second["cost"]["roles"]["reference"]["calls"] == 0 and second["baseline"] == "compare"
    manifest = json.loads((tmp_path / "cmp" / "compare-1b" / "manifest.json").read_text())
    assert manifest["metrics"]["reference_calls"] == 0

    # unchanged config: the stage is up to date and nothing is called
    server.requests.clear()
    _cli(["compare", *sets, "--label", "compare-1b", "--baseline", "compare"])
    assert server.requests == []


def test_an_endpoint_failing_mid_run_is_an_error_item_and_the_run_finishes(fresh_openai_server, tmp_path):
    server = fresh_openai_server
    sets = _sets(server, tmp_path, ray_on=False) + [
        "evaluate.compare.attempts=1", "evaluate.compare.reference.max_retries=0", "judge.max_retries=0",
        "evaluate.compare.swap_positions=false"]
    server.faults.extend(["500"])  # the first reference call fails; the second succeeds
    _cli(["compare", *sum((["--set", s] for s in sets), [])])
    stage = tmp_path / "cmp" / "compare"
    items = {i["id"]: i for i in map(json.loads, (stage / "items.jsonl").read_text().splitlines())}
    assert items["math-1"]["outcome"] == "error" and "500" in items["math-1"]["reason"]
    assert items["code-1"]["outcome"] != "error" or "judge" in items["code-1"]["reason"]
    results = json.loads((stage / "results.json").read_text())
    assert results["summary"]["overall"]["error"] >= 1
    # the failed reference answer is not cached: the next run asks for it again, and only for it
    server.requests.clear()
    _cli(["compare", *sum((["--set", s] for s in sets), []), "--label", "compare-retry"])
    assert Counter(r["model"] for r in server.requests)["reference-model"] == 1


def test_bad_input_is_a_one_paragraph_error(tmp_path):
    result = CliRunner().invoke(app, ["compare", "--set", f"run.root={tmp_path}", "--baseline", "nope",
                                      "--set", "evaluate.compare.prompts=/does/not/exist.jsonl"])
    assert result.exit_code == 2 and "does not exist" in result.output
    for label in ("compare-reference", "train"):
        result = CliRunner().invoke(app, ["compare", "--set", f"run.root={tmp_path}", "--label", label])
        assert result.exit_code == 2 and "cannot name a comparison stage" in result.output
