"""Pure parts of the modifiers phase: verification, k clamping, task splits, validation figures, configs."""

from __future__ import annotations

import numpy as np
import pytest

from cogumi.config import load_config
from cogumi.errors import CogumiError
from cogumi.modifiers.adapters import domain_train_config
from cogumi.modifiers.clustering import choose_k, cluster_embeddings
from cogumi.modifiers.report import validation_summary
from cogumi.modifiers.tasks import check_task, load_tasks, split_domain
from cogumi.modifiers.verify import verify

ADD = {"id": "t", "domain": "code", "prompt": "add", "tests": ["assert add(2, 3) == 5"]}


def test_code_verification_runs_the_tests_in_the_sandbox():
    good = verify("code", ADD, "Here:\n```python\ndef add(a, b):\n    return a + b\n```")
    bad = verify("code", ADD, "```python\ndef add(a, b):\n    return a - b\n```")
    crash = verify("code", ADD, "```python\ndef add(a, b) return\n```")
    assert good.passed and good.score == 1.0
    assert not bad.passed and bad.score == 0.0 and "failed" in bad.detail
    assert not crash.passed


def test_math_verification_compares_the_final_number():
    task = {"id": "m", "domain": "reasoning", "prompt": "7+5?", "answer": "12"}
    assert verify("math", task, "7 plus 5 makes 12. The answer is 12.").passed
    assert verify("math", task, "The answer is 12.0").passed
    wrong = verify("math", task, "I think the answer is 13")
    assert not wrong.passed and "13" in wrong.detail
    assert not verify("math", task, "no idea").passed


def test_judge_verification_needs_a_judge():
    with pytest.raises(ValueError):
        verify("judge", {"id": "a", "domain": "automation", "prompt": "p"}, "x")


@pytest.mark.parametrize("requested,n,k,clamped", [(8, 20, 8, False), (8, 3, 3, True), (10, 10, 10, False),
                                                   (8, 0, 0, True)])
def test_k_is_clamped_to_the_failures_and_says_so(requested, n, k, clamped):
    got, note = choose_k(requested, n)
    assert got == k
    assert bool(note) == clamped


def test_kmeans_separates_two_obvious_groups():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.01, (6, 4)) + np.array([1, 0, 0, 0])
    b = rng.normal(0, 0.01, (5, 4)) + np.array([0, 1, 0, 0])
    labels, k, note = cluster_embeddings(np.vstack([a, b]), 2)
    assert k == 2 and note == ""
    assert len(set(labels[:6])) == 1 and len(set(labels[6:])) == 1 and labels[0] != labels[6]
    labels, k, note = cluster_embeddings(np.vstack([a, b])[:1], 8)
    assert (labels, k) == ([0], 1) and "clamped" in note


def test_packaged_tasks_cover_the_default_domains_and_split_without_overlap():
    tasks = load_tasks("embedded")
    cfg = load_config(None)
    for d, s in cfg.modifiers.domains.items():
        mine_t, hold_t = split_domain(tasks, d, None, 0.3, 0)
        assert mine_t and hold_t
        assert not {t["id"] for t in mine_t} & {t["id"] for t in hold_t}
        for t in mine_t + hold_t:
            check_task(t, s.verify)
    assert split_domain(tasks, "code", None, 0.3, 0) == split_domain(tasks, "code", None, 0.3, 0)


def test_bad_task_sets_are_clear_errors(tmp_path):
    with pytest.raises(CogumiError, match="does not exist"):
        load_tasks(str(tmp_path / "nope.jsonl"))
    with pytest.raises(CogumiError, match="at least 2"):
        split_domain(load_tasks("embedded"), "poetry", None, 0.3, 0)
    with pytest.raises(CogumiError, match="no 'tests'"):
        check_task({"id": "x", "domain": "code", "prompt": "p"}, "code")
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"id": "a", "prompt": "p"}\n')
    with pytest.raises(CogumiError, match="lacks domain"):
        load_tasks(str(bad))


def test_validation_summary_gives_delta_and_win_rate():
    base = [{"split": "holdout", "passed": False, "score": 0.0}, {"split": "holdout", "passed": True, "score": 1.0},
            {"split": "mine", "passed": False, "score": 0.0}]
    mod = [{"passed": True, "score": 1.0}, {"passed": True, "score": 1.0}, {"passed": False, "score": 0.0}]
    v = validation_summary(base, mod, "math")
    assert v["holdout"] == {"tasks": 2, "base_accuracy": 0.5, "adapter_accuracy": 1.0, "delta": 0.5,
                            "win_rate": 0.5, "loss_rate": 0.0}
    assert v["all"]["tasks"] == 3 and v["all"]["delta"] == pytest.approx(1 / 3, abs=1e-3)


def test_domain_train_config_sets_the_rank_and_keeps_checkpoints_consistent():
    cfg = load_config("configs/local.yaml")
    tc = domain_train_config(cfg.train, 112, None, 2)
    assert tc.lora.r == 112 and tc.lora.alpha == cfg.train.lora.alpha and tc.max_steps == 2
    assert tc.save_steps % tc.eval_steps == 0 and tc.eval_steps <= 2
    assert domain_train_config(cfg.train, 96, 32, None).lora.alpha == 32


def test_spec_ranks_are_the_defaults():
    ranks = {d: s.rank for d, s in load_config(None).modifiers.domains.items()}
    assert ranks == {"code": 128, "reasoning": 112, "automation": 96}


def test_missing_embedding_model_is_a_clear_error(tmp_path):
    from cogumi.modifiers.clustering import cluster_failures
    from cogumi.route.config import EmbeddingSettings
    from cogumi.route.embedding import EmbeddingModelError

    fail = [{"id": "a", "domain": "code", "prompt": "p", "detail": "x"}]
    with pytest.raises(EmbeddingModelError, match="no sentence-transformers model"):
        cluster_failures(fail, 8, EmbeddingSettings(model=str(tmp_path / "gone")))
    assert cluster_failures([], 8, EmbeddingSettings(model=str(tmp_path / "gone"))).k_used == 0
