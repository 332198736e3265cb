"""Ray Serve on a 3-node cluster: BaseModel replicas on two nodes over HTTP; a killed replica is replaced."""

from __future__ import annotations

import pytest

from tests.integration.cluster.conftest import check_part, run_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    """One subprocess: the cluster, Cogumi's Serve app with 2 base replicas, requests, a replica kill."""
    return run_scenario("serve", tmp_path_factory.mktemp("cluster-serve"), 600)


def test_replicas_on_two_nodes_answer_openai_requests(serving):
    part = check_part(serving, "spread")
    assert part["models"][:2] == ["cogumi", "cogumi/base"] and part["ready"]["ready"]
    assert all(a["ok"] and a["route"] == "base" for a in part["answers"]), part["answers"]
    replicas = part["replicas"]
    assert sorted(r["node"] for r in replicas) == ["node_a", "node_b"]
    assert all(r["handled"] >= 1 for r in replicas), replicas  # both replicas served requests


def test_a_killed_replica_is_replaced_and_requests_recover(serving):
    part = check_part(serving, "fault")
    killed = part["killed"]
    assert part["victim_state"] == "DEAD"
    assert part["recovered_after_s"] is not None, part["during"][-5:]
    replicas = part["replicas_after"]
    assert len(replicas) == 2 and killed["actor_id"] not in {r["actor_id"] for r in replicas}
    assert sorted(r["node"] for r in replicas) == ["node_a", "node_b"]  # the new replica took the freed node
    assert all(a["ok"] for a in part["after"]), part["after"]
    fresh = next(r for r in replicas if r["node"] == killed["node"])
    assert fresh["handled"] >= 1  # the replacement answers requests, not only the survivor
