"""Phase 0 on a 3-node Ray cluster whose nodes share nothing but an s3:// run root (a local moto server)."""

from __future__ import annotations

import pytest

from tests.integration.cluster.conftest import check_part, run_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_curation_over_three_nodes_shares_only_the_s3_run_root(tmp_path):
    pytest.importorskip("moto", reason="moto[server] is a dev extra (pip install -e .[dev])")
    result = run_scenario("s3_curate", tmp_path, 240)
    part = check_part(result, "curate")
    assert part["status"] == "ran" and part["rerun_status"] == "skipped"
    rows = part["rows"]
    assert rows["input"] == 4 and rows["ok"] >= 1
    assert part["examples"] == part["jsonl_records"] == rows["ok"]  # consumers read the bucket
    for key in ("runs/r/run.json", "runs/r/curate/manifest.json", "runs/r/curate/curated.parquet",
                "runs/r/curate/rows.parquet", "runs/r/curate/stats.json"):
        assert key in part["keys"], part["keys"]
    # Ray Data's tasks ran on more than one node, each node with its own scratch folder
    ran_on = {node for node, names in part["finished_tasks_by_node"].items() if any("MapBatches" in n for n in names)}
    assert len(ran_on) > 1, part["finished_tasks_by_node"]
    assert all(part["scratch_used"].values())
    assert part["scratch_named_in"] == []  # no stored manifest, stats or report names a node's scratch folder
    assert part["local_s3_dirs"] == []
