"""Fitting the whole router, writing the artifact and serving decisions from it (stand-in embedder)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cogumi.errors import ArtifactError
from cogumi.models.inference import Generation, TokenLogprob, Usage
from cogumi.route.artifact import RouterArtifact, query_text
from cogumi.route.config import RouterConfig
from cogumi.route.contract import RouteDecision, Router
from cogumi.route.escalation import load_escalation_set, train_escalation
from cogumi.route.model import ROUTER_JSON, WEIGHTS
from cogumi.route.train import fit_router
from tests.unit.route.support import synthetic_rows

CODE_Q = [{"role": "user", "content": "python function bug compile class list"}]


def gen(*lps: float) -> Generation:
    toks = [TokenLogprob(f"t{i}", lp, {f"t{i}": lp, "alt": math.log(max(1e-9, 1 - math.exp(lp)))})
            for i, lp in enumerate(lps)]
    return Generation("answer", "stop", Usage(5, len(lps)), "m", "test", 0.1, toks)


CONFIDENT, DOUBTFUL = gen(-0.05, -0.1, -0.08, -0.2), gen(-1.2, -2.5, -5.5, -1.8)


@pytest.fixture(scope="module")
def built(tmp_path_factory, hash_embedder):
    rows = synthetic_rows(300, seed=2)
    esc_rows = load_escalation_set()
    esc = train_escalation(esc_rows, hash_embedder.encode([r["text"] for r in esc_rows]))
    fit = fit_router(rows, hash_embedder.encode([r["prompt"] for r in rows]), esc,
                     RouterConfig.model_validate({"mlp": {"epochs": 80}}))
    fit.model.info["embedding"] = {"model": "hash", "dim": 384}
    out = tmp_path_factory.mktemp("router")
    fit.model.save(lambda rel, t: (out / rel).write_text(t), lambda rel, b: (out / rel).write_bytes(b))
    return out, fit


def test_fit_measures_accuracy_calibration_and_targets(built):
    _, fit = built
    m = fit.metrics
    assert (m["rows"]["train"], m["rows"]["val"], m["rows"]["test"]) == (240, 30, 30)
    assert m["cascade"]["test_accuracy"] >= 0.9  # labels follow the confidence features
    assert m["pre"]["test_accuracy"] <= m["cascade"]["test_accuracy"]  # the query alone says little here
    assert m["domain_classifier"]["test_accuracy"] >= 0.9
    for key in ("test_ece_raw", "test_ece_temperature", "test_ece_platt", "test_ece"):
        assert 0.0 <= m["cascade"][key] <= 1.0
    t = m["targets"]
    assert t["router_accuracy"]["measured"] == m["cascade"]["test_accuracy"]
    assert t["router_accuracy"]["met"] == (m["cascade"]["test_accuracy"] > 0.95)
    assert t["ece"]["met"] == (m["cascade"]["test_ece"] < 0.05)
    assert m["thresholds"]["operating"] == 0.8
    for name in ("reliability_cascade.png", "reliability_pre.png", "sweep.png"):
        assert fit.files[name][:4] == b"\x89PNG"
    assert "| threshold | modifier use | quality |" in fit.files["sweep.md"]
    sweep = json.loads(fit.files["sweep.json"])["test"]["cascade"]
    assert sweep[0]["modifier_share"] == 0.0 and sweep[-1]["modifier_share"] >= 0.9
    assert sweep[-1]["quality"] >= sweep[0]["quality"]  # label-only quality: modifiers never hurt


def test_artifact_round_trip_gives_the_same_probabilities(built, hash_embedder):
    path, fit = built
    loaded = RouterArtifact.load(path, embedder=hash_embedder)
    emb = hash_embedder.encode(["python bug", "cron deploy"])
    conf = np.array([[-0.2, -0.6, 0.2, 2.0], [-2.0, -6.0, 1.6, 2.0]], dtype=np.float32)
    for c in (conf, None):
        assert np.allclose(loaded.model.modifier_probability(emb, c), fit.model.modifier_probability(emb, c))
    cfg = json.loads((path / ROUTER_JSON).read_text())
    assert cfg["input_dim"] == 128 and cfg["hidden"] == [64, 32] and cfg["labels"] == {"0": "base", "1": "modifier"}
    assert set(cfg["calibration"]) == {"cascade", "pre"} and cfg["domains"] == ["automation", "code", "reasoning"]


def test_loaded_router_satisfies_the_serving_protocol(built, hash_embedder):
    path, _ = built
    cascade = RouterArtifact.load(path, embedder=hash_embedder)
    pre = RouterArtifact.load(path, mode="pre", embedder=hash_embedder)
    assert isinstance(cascade, Router) and isinstance(pre, Router)
    assert cascade.needs_base_answer and not pre.needs_base_answer
    d = cascade.route(CODE_Q, CONFIDENT, ["code", "reasoning"])
    assert isinstance(d, RouteDecision) and (d.modifier, d.reason, d.domain) == (None, "confident", "code")
    assert d.confidence >= 0.8
    d = cascade.route(CODE_Q, DOUBTFUL, ["code", "reasoning"])
    assert (d.modifier, d.reason) == ("code", "low-confidence") and d.confidence < 0.8
    assert cascade.route(CODE_Q, DOUBTFUL, []).reason == "no-modifiers"
    d = cascade.route(CODE_Q, DOUBTFUL, ["reasoning"])
    assert (d.modifier, d.reason, d.domain) == (None, "no-domain", "code")
    d = pre.route(CODE_Q, None, ["code"])
    assert d.reason in ("pre-route", "confident") and d.scores["router_input"] == 0.0


def test_plain_api_and_threshold_override(built, hash_embedder):
    path, _ = built
    r = RouterArtifact.load(path, embedder=hash_embedder)
    assert r.route_after_generation(CODE_Q, CONFIDENT)[0] is None
    modifier, conf = r.route_after_generation(CODE_Q, DOUBTFUL)
    assert modifier == "code" and 0 <= conf < 0.8
    assert isinstance(r.route_query(CODE_Q)[1], float)
    never = RouterArtifact.load(path, threshold=0.0, embedder=hash_embedder)
    assert never.route_after_generation(CODE_Q, DOUBTFUL)[0] is None


def test_escalation_sends_the_original_question_to_its_modifier(built, hash_embedder):
    path, _ = built
    r = RouterArtifact.load(path, embedder=hash_embedder)
    convo = CODE_Q + [{"role": "assistant", "content": "Here you go."},
                      {"role": "user", "content": "That's wrong, it still doesn't work. Try again."}]
    flagged, p = r.is_escalation(convo)
    assert flagged and p == r.escalation(convo) >= 0.5
    assert r.escalation(CODE_Q) == 0.0  # nothing to complain about yet
    d = r.route(convo, None, ["code", "reasoning"])
    assert (d.modifier, d.reason) == ("code", "escalation") and d.escalation >= 0.5
    assert query_text(convo, escalated=True).startswith("python function")


def test_broken_artifacts_are_clear_errors(built, tmp_path, hash_embedder):
    path, _ = built
    with pytest.raises(ArtifactError, match="not a router artifact"):
        RouterArtifact.load(tmp_path, embedder=hash_embedder)
    (tmp_path / ROUTER_JSON).write_text((path / ROUTER_JSON).read_text())
    (tmp_path / WEIGHTS).write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="corrupt"):
        RouterArtifact.load(tmp_path, embedder=hash_embedder)
    cfg = json.loads((path / ROUTER_JSON).read_text())
    (tmp_path / ROUTER_JSON).write_text(json.dumps({**cfg, "format_version": 99}))
    (tmp_path / WEIGHTS).write_bytes((path / WEIGHTS).read_bytes())
    with pytest.raises(ArtifactError, match="format 99"):
        RouterArtifact.load(tmp_path, embedder=hash_embedder)

    class Small:
        dim = 16

        def encode(self, texts):
            return np.zeros((len(texts), 16), np.float32)

    with pytest.raises(ArtifactError, match="16 dimensions"):
        RouterArtifact.load(path, embedder=Small())
