"""`cogumi serve --run`: serve exactly what a pipeline run promoted — its GGUF, its adapters, its router."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient
from typer.testing import CliRunner

from cogumi.artifacts import RunDir
from cogumi.cli import app
from cogumi.config import load_config
from cogumi.pipeline.stages import RUN_CONFIG, config_for_run
from tests.unit.serve.support import code_lora  # noqa: F401

CODE_Q = "Write a python function that fixes this bug in my class list."


@pytest.fixture(scope="module")
def promoted_run(tmp_path_factory, embedded_gguf, code_lora):  # noqa: F811 - the fixture imported above
    """A run folder as the pipeline leaves it: promoted GGUF, one promoted and one rejected adapter, a router."""
    from cogumi.route.config import RouterConfig
    from cogumi.route.embedding import Embedder
    from cogumi.route.escalation import load_escalation_set, train_escalation
    from cogumi.route.train import fit_router
    from tests.unit.route.support import synthetic_rows

    root = tmp_path_factory.mktemp("runs")
    cfg = load_config("configs/local.yaml", [f"run.root={root}", "run.name=r"])
    run = RunDir.open(str(root), "r")
    with run.stage("compress.gguf").begin("h") as rec:
        shutil.copy(embedded_gguf, rec.path("model-q4_k_m.gguf"))
        shutil.copy(embedded_gguf, rec.path("model-q5_k_m.gguf"))  # rejected by its gate: not served
        rec.metrics["served"] = "model-q4_k_m.gguf"
    with run.stage("modifiers").begin("h") as rec:
        Path(rec.path("adapters/code")).mkdir(parents=True)
        shutil.copy(code_lora, rec.path("adapters/code/adapter.gguf"))
        rec.metrics.update(adapters=["code"], rejected_adapters={"reasoning": "planted"})
    embedder = Embedder()
    rows = synthetic_rows(120, seed=1)
    esc_rows = load_escalation_set()
    esc = train_escalation(esc_rows, embedder.encode([r["text"] for r in esc_rows]))
    fit = fit_router(rows, embedder.encode([r["prompt"] for r in rows]), esc,
                     RouterConfig.model_validate({"mlp": {"epochs": 40}}))
    with run.stage("router").begin("h") as rec:
        fit.model.save(lambda rel, t: open(rec.path(rel), "w").write(t),
                       lambda rel, b: open(rec.path(rel), "wb").write(b))
    with run.stage("pipeline").begin("h") as rec:
        rec.write_text(RUN_CONFIG, yaml.safe_dump(cfg.model_dump(mode="json")))
    return root / "r"


def test_the_run_config_points_at_the_promoted_artifacts(promoted_run):
    cfg = config_for_run(str(promoted_run))
    s = cfg.serve
    assert s.base.backend == "llamacpp" and s.base.model.endswith("compress.gguf/model-q4_k_m.gguf")
    assert s.adapters_dir.endswith("modifiers/adapters") and s.routing.artifact.endswith("/router")


def test_the_served_run_answers_with_its_adapters_and_router(promoted_run):
    from cogumi.serve.api import create_app
    from cogumi.serve.local import build_local_system

    cfg = config_for_run(str(promoted_run), ["serve.base.n_ctx=512"])
    system = build_local_system(cfg.serve, n_threads=1)
    try:
        client = TestClient(create_app(system.service, cfg.serve, None))
        models = {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert "cogumi/code" in models and "cogumi/reasoning" not in models  # only the promoted adapter
        body = {"model": "cogumi", "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": CODE_Q}]}
        routed = client.post("/v1/chat/completions", json=body).json()
        assert routed["cogumi"]["router"].startswith("router-artifact/")  # the run's router, not the built-in
        forced = client.post("/v1/chat/completions", json={**body, "model": "cogumi/code"}).json()
        assert forced["cogumi"]["route"] == "code" and forced["choices"][0]["message"]["content"]
    finally:
        system.close()


def test_serve_run_without_a_finished_run_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--run", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no recorded pipeline config" in result.output
