"""The batch runner against the real local batch server (HTTP, ``openai`` client): shards, resumes, resubmits."""

from __future__ import annotations

import pytest

from cogumi.config_base import ModelConfig
from cogumi.endpoints.batch import BatchAPI, BatchLedger, BatchRequest, BatchRunner, chat_body
from cogumi.endpoints.cache import ResponseCache
from cogumi.endpoints.config import BatchConfig
from cogumi.models.inference import SamplingParams
from tests.support.batch_server import LocalBatchServer
from tests.support.canned_backend import CannedBackend


@pytest.fixture(scope="module")
def server():
    s = LocalBatchServer(CannedBackend(), delay_s=0.05).start()
    yield s
    s.stop()


@pytest.fixture
def fresh(server):
    server.batch_faults.clear()
    server.submissions.clear()
    server.batch_paid.clear()
    return server


def requests(n: int, who: str = "t") -> list[BatchRequest]:
    return [BatchRequest(f"key-{who}-{i:03d}", who, chat_body("local-teacher", [
        {"role": "user", "content": f"Question {i}?"}], SamplingParams(max_tokens=8))) for i in range(n)]


def runner(tmp_path, server, **cfg) -> BatchRunner:
    settings = BatchConfig(poll_s=0.05, **cfg)
    api = BatchAPI(ModelConfig(backend="openai", base_url=server.base_url, model="local-teacher"))
    return BatchRunner(BatchLedger(str(tmp_path / "batches")), {"t": api}, {"t": settings},
                       ResponseCache(str(tmp_path / "cache")))


def test_requests_are_sharded_submitted_and_collected_into_the_cache(tmp_path, fresh):
    r = runner(tmp_path, fresh, max_requests_per_file=4)
    assert r.plan(requests(10)) == 10
    assert r.plan(requests(10)) == 0  # planned keys are never planned again
    out = r.run(max_wait_s=30)
    assert out.submitted == 3 and out.rows_ok == 10 and out.failed == {"t": {}}
    assert [len(s["custom_ids"]) for s in fresh.submissions] == [4, 4, 2]
    for req in requests(10):
        gen, extra = r.cache.lookup(req.key)
        assert gen.text and extra["batch_id"] in out.batch_ids["t"]
    assert fresh.duplicate_submissions() == 0 and fresh.duplicate_paid_rows() == 0


@pytest.mark.parametrize("fault", [{"fail_rows": 2, "status": 500}, {"expire_after": 3}])
def test_expired_or_partially_failed_batch_resubmits_only_the_missing_rows(tmp_path, fresh, fault):
    fresh.batch_faults.append(fault)
    r = runner(tmp_path, fresh)
    r.plan(requests(5))
    out = r.run(max_wait_s=30)
    first, second = fresh.submissions
    missing = first["custom_ids"][:2] if "fail_rows" in fault else first["custom_ids"][3:]
    assert sorted(second["custom_ids"]) == sorted(missing)  # only the rows without an answer
    assert out.rows_ok == 5 and out.failed == {"t": {}} and out.submitted == 2
    assert len(fresh.batch_paid) == 5 and fresh.duplicate_paid_rows() == 0


def test_a_request_refused_for_good_is_not_resubmitted_and_says_why(tmp_path, fresh):
    fresh.batch_faults.append({"fail_rows": 1, "status": 400})
    r = runner(tmp_path, fresh)
    r.plan(requests(3))
    out = r.run(max_wait_s=30)
    assert len(fresh.submissions) == 1 and out.rows_ok == 2
    (key, why), = out.failed["t"].items()
    assert key == fresh.submissions[0]["custom_ids"][0] and "injected failure 400" in why


def test_rows_out_of_rounds_are_failed(tmp_path, fresh):
    fresh.batch_faults.extend([{"expire_after": 0}, {"expire_after": 0}])
    r = runner(tmp_path, fresh, max_rounds=2)
    r.plan(requests(2))
    out = r.run(max_wait_s=30)
    assert len(fresh.submissions) == 2 and len(out.failed["t"]) == 2
    assert all("batch_expired" in why and "after 2 round(s)" in why for why in out.failed["t"].values())


def test_a_run_killed_between_create_and_ledger_finds_its_batch_instead_of_submitting_again(tmp_path, fresh):
    r = runner(tmp_path, fresh)
    r.plan(requests(3))
    (shard,) = r.ledger.shards().values()
    api = r.apis["t"]
    file_id = api.upload(f"{shard.name}.jsonl", r.ledger.read_shard(shard.name))
    r.ledger.record("submitting", shard.name, file_id=file_id)
    created = api.create(file_id, "24h", shard.uid)  # ... and the process died before recording it
    resumed = runner(tmp_path, fresh)  # a new process reads the ledger
    out = resumed.run(max_wait_s=30)
    assert out.batch_ids == {"t": [created]} and len(fresh.submissions) == 1 and out.rows_ok == 3


def test_a_rejected_batch_fails_its_rows_with_the_providers_reason(tmp_path, fresh):
    fresh.batch_faults.append({"reject": "model not found"})
    r = runner(tmp_path, fresh)
    r.plan(requests(2))
    out = r.run(max_wait_s=30)
    assert len(out.failed["t"]) == 2 and all("model not found" in w for w in out.failed["t"].values())


def test_finish_keeps_the_ledger_and_removes_request_files(tmp_path, fresh):
    r = runner(tmp_path, fresh)
    r.plan(requests(2))
    r.run(max_wait_s=30)
    kept = r.ledger.finish()
    assert sorted(p.name for p in (tmp_path / "batches").iterdir()) == [kept.rsplit("/", 1)[1]]
    assert BatchLedger(str(tmp_path / "batches")).events == []
