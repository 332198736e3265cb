"""Ray Train on a 3-node cluster: 2 workers on 2 nodes; a SIGKILLed worker resumes from the last checkpoint."""

from __future__ import annotations

import pytest

from tests.integration.cluster.conftest import check_part, run_scenario
from tests.integration.cluster.scenarios.train import STEPS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def training(tmp_path_factory, tiny_llama_dir):
    """One subprocess: the cluster, an unbroken 2-worker run, then the same run with a worker killed."""
    return run_scenario("train", tmp_path_factory.mktemp("cluster-train"), 600, "--model", str(tiny_llama_dir))


def test_two_workers_train_one_adapter_on_two_nodes(training):
    run = check_part(training, "distributed")
    assert sorted(w["node"] for w in run["workers"]) == ["node_a", "node_b"]
    assert run["workers_method"] == "2 x CPU" and run["global_step"] == STEPS and run["adapter"]
    assert [s for s, _ in run["losses"]] == list(range(1, STEPS + 1))
    assert run["losses"][-1][1] < run["losses"][0][1]


def test_a_killed_worker_resumes_from_the_last_checkpoint_to_the_same_loss(training):
    ref, run = check_part(training, "distributed"), check_part(training, "fault")
    killed = run["killed"]
    assert killed and killed["registered_at_kill"], "the worker was not killed after a registered checkpoint"
    assert killed["node"] in ("node_a", "node_b")
    assert len(run["workers"]) == 4  # the group of 2 was started again after the kill
    assert 2 <= run["resumed_from_step"] < STEPS and run["global_step"] == STEPS
    assert [s for s, _ in run["losses"]] == list(range(1, STEPS + 1))  # one history, no step lost or repeated
    assert run["last_train_loss"] == pytest.approx(ref["last_train_loss"], rel=0.02)
    assert run["best_eval_loss"] == pytest.approx(ref["best_eval_loss"], rel=0.02)
