"""Batch mode in curation: plan the requests on Ray Data, run them through the provider's batch API.

For teachers in ``mode: batch`` (and the judge in ``mode: batch``) the requests the
online step would send are planned first, as a Ray Data stage over the rows
(:class:`PlanTeacherRequests`, :class:`PlanJudgeRequests`: the same conversation,
settings and cache key, skipping answers already in the response cache). The
driver then runs them with :class:`~cogumi.endpoints.batch.BatchRunner`, whose
ledger lives in ``<run>/curate/batches/`` so a killed or resubmitted run picks up
the same batches. The answers land in the response cache; the online steps then
find them there and bill them at the batch price
(:class:`~cogumi.endpoints.metered.BatchBilling`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pyarrow as pa

from cogumi.config_base import ModelConfig
from cogumi.curate.config import CurateConfig
from cogumi.curate.judge import QualityJudgeStep
from cogumi.curate.rows import from_table, is_ok
from cogumi.curate.teacher import TeacherStep
from cogumi.endpoints.batch import BatchRequest, billing_of, run_batch_requests, uncached_request
from cogumi.endpoints.cache import ResponseCache
from cogumi.endpoints.config import BatchConfig
from cogumi.endpoints.limiter import LocalLimiter
from cogumi.endpoints.metered import MeteredEndpoint
from cogumi.endpoints.quality_judge import quality_messages

log = logging.getLogger(__name__)
__all__ = ["PlanJudgeRequests", "PlanTeacherRequests", "billing_of", "run_batches"]
REQUEST_SCHEMA = pa.schema([("who", pa.string()), ("key", pa.string()), ("body", pa.string())])


def _endpoint(name: str, model: ModelConfig, cfg: CurateConfig, cache: ResponseCache) -> MeteredEndpoint:
    """An endpoint used only for its cache key (it never calls: no backend is built before a call)."""
    return MeteredEndpoint(name, model, 0.0, 0.0, cfg.retry, LocalLimiter(), cache)


def _row(req: BatchRequest) -> dict[str, str]:
    return {"who": req.who, "key": req.key, "body": json.dumps(req.body)}


def _table(rows: list[dict[str, str]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=REQUEST_SCHEMA)


class PlanTeacherRequests:
    """Ray Data step: the batch requests of ok rows whose teacher is in batch mode and not cached yet."""

    def __init__(self, curate_json: str, cache_uri: str):
        self.cfg = CurateConfig.model_validate_json(curate_json)
        cache = ResponseCache(cache_uri)
        self.step = TeacherStep(self.cfg, {}, self.cfg.seed)
        self.endpoints = {t.name: _endpoint(t.name, t.model, self.cfg, cache)
                          for t in self.cfg.teachers if t.mode == "batch"}

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for row in from_table(batch):
            call = self.step.request(row)
            if call is None or call[0].name not in self.endpoints:
                continue
            teacher, messages, params = call
            req = uncached_request(self.endpoints[teacher.name], messages, params)
            if req is not None:
                out.append(_row(req))
        return _table(out)


class PlanJudgeRequests:
    """Ray Data step: the judge's first-attempt batch requests of ok rows not cached yet."""

    def __init__(self, curate_json: str, judge_json: str, cache_uri: str):
        self.cfg = CurateConfig.model_validate_json(curate_json)
        self.endpoint = _endpoint("judge", ModelConfig.model_validate_json(judge_json), self.cfg,
                                  ResponseCache(cache_uri))
        self.step = QualityJudgeStep(self.cfg, self.endpoint)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        params = self.step.params(0)
        for row in from_table(batch):
            if not is_ok(row):
                continue
            req = uncached_request(self.endpoint, quality_messages(row["instruction"], row["response"]), params)
            if req is not None:
                out.append(_row(req))
        return _table(out)


def run_batches(requests: Any, ledger_uri: str, cache_uri: str,
                askers: dict[str, tuple[ModelConfig, BatchConfig, float, float]],
                fs: Any = None) -> dict[str, dict[str, Any]]:
    """Run ``requests``, a Ray Dataset of :data:`REQUEST_SCHEMA` (see :func:`~cogumi.endpoints.batch.run_batch_requests`)."""
    return run_batch_requests((BatchRequest(r["key"], r["who"], json.loads(r["body"])) for r in requests.iter_rows()),
                              ledger_uri, cache_uri, askers, fs)
