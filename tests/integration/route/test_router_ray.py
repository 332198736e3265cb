"""The router stage on local Ray with the embedded model: base answers and embeddings via Ray Data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cogumi.config import load_config
from cogumi.models.inference import SamplingParams

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]

# A few prompts with labels written for the test (both classes; no modifier ran): the
# confidence features are computed from the embedded SmolLM2's real answers on Ray.
PROMPTS = [
    ("What is 2 + 2? Reply with the number only.", "reasoning", 0),
    ("What is 7319 times 28? Reply with the number only.", "reasoning", 1),
    ("Is 10 an even number? Reply with yes or no.", "reasoning", 0),
    ("Prove that there are infinitely many primes of the form 4k+3.", "reasoning", 1),
    ("In Python, what is len('cat')? Reply with the value only.", "code", 0),
    ("Write a Python function that merges overlapping intervals in O(n log n).", "code", 1),
    ("In Python, what is 'ok'.upper()? Reply with the value only.", "code", 0),
    ("Implement a lock-free queue in C++ with hazard pointers.", "code", 1),
    ("Which HTTP method creates a new resource? Reply with one word.", "automation", 0),
    ("Write a GitHub Actions workflow that builds, tests and deploys to three clouds.", "automation", 1),
    ("Give the cron expression for every day at 05:30.", "automation", 0),
    ("Write a webhook relay that retries with exponential backoff and deduplicates events.", "automation", 1),
]


def build(root: Path, data: Path, extra: list[str]):
    from cogumi.artifacts import RunDir
    from cogumi.route.stage import STAGE, resolve_source, run_router_stage, stage_key

    cfg = load_config(REPO / "configs" / "local.yaml", [f"run.root={root}", f"router.data.file={data}", "router.data.max_tokens=8",
                                             "router.mlp.epochs=30", *extra])
    stage = RunDir.open(cfg.run.root, cfg.run.name).stage(STAGE)
    source = resolve_source(cfg, stage.run)
    with stage.begin(*stage_key(cfg, source)) as rec:
        metrics = run_router_stage(cfg, rec, source)
    return stage, metrics


@pytest.fixture(scope="module")
def artifact(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("router-ray")
    data = tmp / "routing.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": p, "domain": d, "label": y}) for p, d, y in PROMPTS) + "\n")
    return build(tmp / "runs", data, ["router.extract.base_num_cpus=0.5", "router.extract.embed_num_cpus=0.5"])


def test_features_come_from_the_embedded_model_on_ray(artifact):
    stage, metrics = artifact
    manifest = json.loads(Path(stage.file("manifest.json")).read_text())
    assert manifest["status"] == "finished"
    assert manifest["method"]["feature_extraction"] == "ray data (actor per UDF)"
    assert manifest["method"]["confidence_features"].startswith("generated: llamacpp:embedded:smollm2")
    import pyarrow.parquet as pq

    rows = pq.read_table(stage.file("routing_features.parquet")).to_pylist()
    assert [r["prompt"] for r in rows] == [p for p, _, _ in PROMPTS]  # order kept through Ray
    assert all(r["base_answer"] and r["base_mean_logprob"] < 0 and r["base_min_logprob"] <= r["base_mean_logprob"]
               for r in rows)
    assert all(r["base_entropy"] > 0 for r in rows)  # top-5 alternatives came back
    assert metrics["rows"]["total"] == 12 and metrics["targets"]["rows"] == metrics["rows"]["test"]


def test_serving_loads_the_ray_built_router_and_scores_a_real_answer(artifact, embedded_llamacpp):
    from cogumi.route.contract import Router
    from cogumi.route.loader import load_router

    stage, _ = artifact
    router = load_router(stage.path, 0.8, "cascade")
    assert isinstance(router, Router) and router.needs_base_answer
    messages = [{"role": "user", "content": "Write a Python function that reverses a linked list."}]
    base = embedded_llamacpp.chat(messages, SamplingParams(max_tokens=8, logprobs=True, top_logprobs=5))
    d = router.route(messages, base, ["code", "reasoning", "automation"])
    assert d.domain in ("code", "reasoning", "automation") and 0.0 <= d.confidence <= 1.0
    assert (d.modifier is None) == (d.confidence >= 0.8)
    assert d.scores["router_input"] == 1.0


@pytest.mark.slow
def test_local_proxy_default_builds_a_router(ray_local, tmp_path):
    """The embedded default with no modifiers stage: the proxy set answered by the base on Ray."""
    stage, metrics = build(tmp_path / "runs", tmp_path / "unused.jsonl",
                           ["router.data.source=local-proxy", "router.data.proxy_prompts=48",
                            "router.extract.base_num_cpus=0.5", "router.extract.embed_num_cpus=0.5"])
    manifest = json.loads(Path(stage.file("manifest.json")).read_text())
    assert manifest["method"]["routing_data"].startswith("local-proxy")
    assert metrics["rows"]["total"] == 48 and 0 < metrics["rows"]["label_1_share"] < 1
    assert Path(stage.file("router.json")).is_file()
