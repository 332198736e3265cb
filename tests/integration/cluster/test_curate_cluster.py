"""Phase 0 on a 3-node Ray cluster: work spread over the worker nodes; a killed teacher worker loses no row."""

from __future__ import annotations

import pytest

from tests.integration.cluster.conftest import check_part, run_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WORKER_NODES = {"node_a", "node_b"}


@pytest.fixture(scope="module")
def curation(tmp_path_factory):
    """One subprocess: the cluster, the local OpenAI server, an unbroken run and a run with a kill."""
    return run_scenario("curate", tmp_path_factory.mktemp("cluster-curate"), 600)


def assert_every_row_accounted(part: dict) -> None:
    n = part["input_prompts"]
    assert part["exit_code"] == 0 and part["manifest_status"] == "finished"
    assert part["row_lines"] == list(range(1, n + 1))  # each input line exactly once
    assert len(set(part["row_ids"])) == len(part["row_ids"]) == n
    assert set(part["statuses"]) <= {"ok", "error", "filtered"}
    rows = part["stats_rows"]
    assert part["stats_accounted"] and rows["input"] == n == rows["ok"] + rows["error"] + rows["filtered"]
    assert part["curated_rows"] == part["statuses"].count("ok") == rows["ok"] >= 1


def test_curation_runs_on_both_worker_nodes(curation):
    part = check_part(curation, "spread")
    assert_every_row_accounted(part)
    teachers = [w for w in part["map_workers"] if "TeacherUDF" in w["class"]]
    assert len(teachers) == 2 and {w["node"] for w in teachers} == WORKER_NODES
    assert any("JudgeUDF" in w["class"] for w in part["map_workers"])  # the judge ran as an actor too
    # batches were really processed on both nodes, not just actors placed there
    processed = {node for node, names in part["finished_tasks_by_node"].items()
                 if any(n.startswith("MapWorker(MapBatches(TeacherUDF)).submit") for n in names)}
    assert processed == WORKER_NODES
    assert part["teacher_requests"] >= part["input_prompts"]  # teacher + judge calls reached the server


def test_a_teacher_worker_killed_mid_run_loses_no_row(curation):
    part = check_part(curation, "fault")
    killed = part["killed"]
    assert killed, "no teacher actor was running a batch to kill"
    assert killed["node"] in WORKER_NODES and killed["requests_before_kill"] < part["teacher_requests"]
    assert_every_row_accounted(part)
    assert "error" not in part["statuses"], part["reasons"]  # the lost batch was retried, not failed
    victim = part["victim_after"]
    assert victim["restarts"] >= 1 and victim["pid"] != killed["pid"]  # Ray Data restarted that actor
