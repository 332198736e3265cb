"""Provider batch APIs (OpenAI Batch shape): shard, submit, poll, collect; resumable, never paying twice.

A batch run turns requests (a cache key, who asks, the chat-completion body) into
JSONL files of at most ``max_requests_per_file`` requests / ``max_file_mb``
(``POST /v1/files`` purpose ``batch``), creates one batch per file
(``POST /v1/batches``), polls them (``GET /v1/batches/{id}``) and, once a batch
ends, reads its output and error files (``GET /v1/files/{id}/content``) into the
response cache, where the metered endpoint finds the answers
(:class:`~cogumi.endpoints.metered.BatchBilling`). The ``custom_id`` of a request
is its cache key, so online and batch runs share answers.

Every step is written to a ledger in the run directory before and after it
happens (:class:`BatchLedger`): the shard file before ``planned``, ``submitting``
(with the uploaded file id) before the batch is created and ``submitted`` (with the
batch id) after. A run killed anywhere resumes from the ledger: a shard caught
between ``submitting`` and ``submitted`` is looked up by the ``cogumi_shard``
metadata it was created with before anything is created again, so no request is
submitted (or paid) twice. Rows that expired or failed transiently go into a new
shard of the next round (only those rows); rows that failed for good, or ran out
of rounds, are reported per key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

import pyarrow.fs as pafs

from cogumi.artifacts import resolve_filesystem
from cogumi.config_base import ModelConfig
from cogumi.endpoints.cache import ResponseCache, durable_write
from cogumi.endpoints.config import BatchConfig
from cogumi.endpoints.metered import BatchBilling, MeteredEndpoint
from cogumi.errors import CogumiError
from cogumi.models.inference import Generation, Message, SamplingParams, Usage
from cogumi.models.inference.openai_backend import chat_request_fields

log = logging.getLogger(__name__)
CHAT_URL = "/v1/chat/completions"
TERMINAL = ("completed", "expired", "failed", "cancelled")
RETRYABLE_CODES = ("batch_expired", "batch_cancelled", "rate_limit_exceeded", "server_error", "timeout")
LEDGER = "ledger.jsonl"


@dataclass
class BatchRequest:
    """One request of a batch: ``key`` is its cache key and ``custom_id``."""

    key: str
    who: str
    body: dict[str, Any]

    def line(self) -> str:
        return json.dumps({"custom_id": self.key, "method": "POST", "url": CHAT_URL, "body": self.body},
                          sort_keys=True, ensure_ascii=False)


def chat_body(model: str, messages: list[Message], params: SamplingParams) -> dict[str, Any]:
    """The ``/v1/chat/completions`` body an online call with these settings sends (same fields, same values)."""
    fields = chat_request_fields(model, params)
    return {"model": fields.pop("model"), "messages": messages, **fields}  # key order as sent before


def uncached_request(endpoint: MeteredEndpoint, messages: list[Message],
                     params: SamplingParams) -> BatchRequest | None:
    """The batch request of this call of ``endpoint``, or None when its answer is already in the endpoint's cache."""
    key = endpoint.key(messages, params)
    if endpoint.cache is not None and endpoint.cache.lookup(key) is not None:
        return None
    return BatchRequest(key, endpoint.name, chat_body(endpoint.model.model, messages, params))


class BatchAPI:
    """The files + batches endpoints of one OpenAI-compatible provider (the ``openai`` client).

    Args:
        model: where the provider is (``backend: openai``, ``base_url``, ``api_key_env``).
    """

    def __init__(self, model: ModelConfig):
        import os

        import openai

        if model.backend != "openai" or not model.base_url:
            raise CogumiError(f"batch mode needs an OpenAI-compatible endpoint, got backend '{model.backend}'",
                              model.model, "set mode: online, or point the model at a provider's /v1 URL")
        key = os.environ.get(model.api_key_env, "") if model.api_key_env else ""
        self.base_url = model.base_url
        self.client = openai.OpenAI(base_url=model.base_url, api_key=key or "none", timeout=model.timeout_s,
                                    max_retries=5)

    def upload(self, name: str, data: bytes) -> str:
        return self.client.files.create(file=(name, data, "application/jsonl"), purpose="batch").id

    def create(self, file_id: str, window: str, shard_uid: str) -> str:
        batch = self.client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                           completion_window=cast(Any, window), metadata={"cogumi_shard": shard_uid})
        return batch.id

    def find(self, shard_uid: str) -> str | None:
        """The batch created for ``shard_uid`` (by its metadata), if one exists."""
        for batch in self.client.batches.list(limit=100):
            if (batch.metadata or {}).get("cogumi_shard") == shard_uid:
                return batch.id
        return None

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        return self.client.batches.retrieve(batch_id).model_dump()

    def content(self, file_id: str) -> str:
        return self.client.files.content(file_id).text

    def close(self) -> None:
        self.client.close()


@dataclass
class Shard:
    """What the ledger knows about one batch file."""

    name: str
    who: str
    round: int
    rows: int
    uid: str
    file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None
    collected: bool = False
    ok: int = 0
    retry: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class BatchLedger:
    """The durable record of a batch run: ``ledger.jsonl`` (events) and one request file per shard.

    Args:
        uri: its folder (local path or URI), e.g. ``<run>/curate/batches``.
        fs: the filesystem ``uri`` is a path on (then ``uri`` is not resolved), e.g. the run's.
    """

    def __init__(self, uri: str, fs: pafs.FileSystem | None = None):
        self.uri = uri
        self.fs, self.root = (fs, uri) if fs is not None else resolve_filesystem(uri)
        self.fs.create_dir(self.root, recursive=True)
        self._local = isinstance(self.fs, pafs.LocalFileSystem)
        self.events: list[dict[str, Any]] = []
        path = posixpath.join(self.root, LEDGER)
        if self.fs.get_file_info(path).type == pafs.FileType.File:
            with self.fs.open_input_stream(path) as f:
                from cogumi.jsonl import parse_jsonl

                self.events = parse_jsonl(f.read().decode(), posixpath.join(uri, LEDGER))

    def _write(self, relpath: str, body: bytes) -> None:
        path = posixpath.join(self.root, relpath)
        if self._local:
            durable_write(path, body)
        else:
            with self.fs.open_output_stream(path) as f:
                f.write(body)

    def record(self, event: str, shard: str, **fields: Any) -> None:
        """Append an event and make it durable before returning."""
        self.events.append({"event": event, "shard": shard, "at": datetime.now(timezone.utc).isoformat(), **fields})
        self._write(LEDGER, "".join(json.dumps(e, sort_keys=True) + "\n" for e in self.events).encode())

    def write_shard(self, name: str, lines: list[str]) -> bytes:
        body = ("\n".join(lines) + "\n").encode()
        self._write(f"{name}.jsonl", body)
        return body

    def read_shard(self, name: str) -> bytes:
        with self.fs.open_input_stream(posixpath.join(self.root, f"{name}.jsonl")) as f:
            return f.read()

    def shards(self) -> dict[str, Shard]:
        """Every shard's state, folded from the events."""
        out: dict[str, Shard] = {}
        for e in self.events:
            name, kind = e["shard"], e["event"]
            if kind == "planned":
                out[name] = Shard(name, e["who"], e["round"], e["rows"], e["uid"])
                continue
            s = out[name]
            if kind == "submitting":
                s.file_id = e["file_id"]
            elif kind == "submitted":
                s.file_id, s.batch_id = e["file_id"], e["batch_id"]
            elif kind == "collected":
                s.collected, s.status, s.ok = True, e["status"], e["ok"]
                s.retry, s.failed = list(e["retry"]), dict(e["failed"])
        return out

    def keys(self) -> set[str]:
        """Every request key planned so far (in any shard)."""
        keys: set[str] = set()
        for name in self.shards():
            keys.update(json.loads(line)["custom_id"] for line in self.read_shard(name).decode().splitlines() if line)
        return keys

    def finish(self) -> str:
        """Close a finished run: keep the ledger as ``finished-<time>.jsonl``, remove the request files.

        Returns:
            The kept ledger's path.
        """
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        kept = posixpath.join(self.root, f"finished-{stamp}.jsonl")
        for name in self.shards():
            self.fs.delete_file(posixpath.join(self.root, f"{name}.jsonl"))
        self.fs.move(posixpath.join(self.root, LEDGER), kept)
        self.events = []
        return kept


@dataclass
class BatchOutcome:
    """What a finished batch run left for the endpoints: per asker, its batch ids and failed keys."""

    batch_ids: dict[str, list[str]]
    failed: dict[str, dict[str, str]]
    submitted: int
    rows_ok: int


def _generation(body: dict[str, Any]) -> Generation:
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    return Generation(choice["message"].get("content") or "", choice.get("finish_reason") or "stop",
                      Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
                      body.get("model") or "", "openai-batch", 0.0)


def _error_of(line: dict[str, Any]) -> tuple[bool, str]:
    """(retryable, message) of a batch output/error line that holds no answer."""
    err = line.get("error") or {}
    resp = line.get("response") or {}
    status = resp.get("status_code")
    body = resp.get("body") or {}
    code = str(err.get("code") or (body.get("error") or {}).get("code") or "")
    message = str(err.get("message") or (body.get("error") or {}).get("message") or "no answer")
    retryable = code in RETRYABLE_CODES or (status is not None and (status >= 500 or status in (408, 409, 429)))
    return retryable, f"{code or f'HTTP {status}'}: {message}"[:300]


class BatchRunner:
    """Drive the ledger's shards to the end: upload, create, poll, collect, resubmit missing rows.

    Args:
        ledger: the run's ledger.
        apis: asker name -> its provider's :class:`BatchAPI`.
        settings: asker name -> its :class:`BatchConfig`.
        cache: where collected answers go (keyed by ``custom_id``).
        sleep, clock: injectable for tests.
    """

    def __init__(self, ledger: BatchLedger, apis: dict[str, BatchAPI], settings: dict[str, BatchConfig],
                 cache: ResponseCache, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.ledger, self.apis, self.settings, self.cache = ledger, apis, settings, cache
        self.sleep, self.clock = sleep, clock

    def _uid(self, name: str, body: bytes) -> str:
        return hashlib.sha256(f"{self.ledger.uri}|{name}|".encode() + body).hexdigest()[:32]

    def _new_shard(self, name: str, who: str, rnd: int, lines: list[str]) -> None:
        body = self.ledger.write_shard(name, lines)  # durable before the ledger names it
        self.ledger.record("planned", name, who=who, round=rnd, rows=len(lines), uid=self._uid(name, body))

    def plan(self, requests: Iterable[BatchRequest]) -> int:
        """Add shards for the requests the ledger does not hold yet (one key once).

        Returns:
            How many requests were added.
        """
        known = self.ledger.keys()
        shards = self.ledger.shards()
        pending: dict[str, list[str]] = {}
        for req in requests:
            if req.key in known:
                continue
            known.add(req.key)
            pending.setdefault(req.who, []).append(req.line())
        added = 0
        for who, lines in sorted(pending.items()):
            cfg = self.settings[who]
            cap_bytes = int(cfg.max_file_mb * 1e6)
            chunk: list[str] = []
            size = 0
            seq = sum(1 for s in shards.values() if s.who == who and s.round == 1)

            def flush() -> None:
                nonlocal chunk, size, seq
                if chunk:
                    self._new_shard(f"{who}-{seq:05d}", who, 1, chunk)  # noqa: B023 - called in this iteration only
                    seq, chunk, size = seq + 1, [], 0

            for line in lines:
                n = len(line.encode()) + 1
                if chunk and (len(chunk) >= cfg.max_requests_per_file or size + n > cap_bytes):
                    flush()
                chunk.append(line)
                size += n
            flush()
            added += len(lines)
        return added

    def run(self, max_wait_s: float | None = None) -> BatchOutcome:
        """Advance every shard until all are collected.

        Raises:
            CogumiError: still running after ``max_wait_s`` (the batches go on; a rerun collects them).
        """
        start = self.clock()
        while True:
            shards = self.ledger.shards()
            for shard in shards.values():
                if not shard.collected:
                    self._advance(shard)
            shards = self.ledger.shards()
            if all(s.collected for s in shards.values()):
                return self.outcome()
            if max_wait_s is not None and self.clock() - start > max_wait_s:
                running = sorted(s.batch_id or s.name for s in shards.values() if not s.collected)
                raise CogumiError(f"{len(running)} batch(es) still running after {max_wait_s:g} s: "
                                  f"{', '.join(running[:5])}", self.ledger.uri,
                                  "rerun the stage later: it collects the same batches without submitting again")
            self.sleep(min(self.settings[s.who].poll_s for s in shards.values() if not s.collected))

    def _advance(self, shard: Shard) -> None:
        api = self.apis[shard.who]
        if shard.batch_id is None:
            if shard.file_id is not None:  # killed between upload+intent and the batch id: was it created?
                found = api.find(shard.uid)
                if found is not None:
                    self.ledger.record("submitted", shard.name, file_id=shard.file_id, batch_id=found)
                    shard.batch_id = found
            if shard.batch_id is None:
                file_id = api.upload(f"{shard.name}.jsonl", self.ledger.read_shard(shard.name))
                self.ledger.record("submitting", shard.name, file_id=file_id)
                batch_id = api.create(file_id, self.settings[shard.who].completion_window, shard.uid)
                self.ledger.record("submitted", shard.name, file_id=file_id, batch_id=batch_id)
                log.info("batch %s submitted for %s (%d requests)", batch_id, shard.name, shard.rows)
                return
        assert shard.batch_id is not None
        info = api.retrieve(shard.batch_id)
        if info.get("status") in TERMINAL:
            self._collect(shard, info, api)

    def _collect(self, shard: Shard, info: dict[str, Any], api: BatchAPI) -> None:
        """Answers into the cache; missing rows into the next round's shard (or failed); then ``collected``."""
        lines = [json.loads(x) for x in self.ledger.read_shard(shard.name).decode().splitlines() if x]
        requests = {r["custom_id"]: r for r in lines}
        answered: set[str] = set()
        errors: dict[str, tuple[bool, str]] = {}
        for file_id in (info.get("output_file_id"), info.get("error_file_id")):
            if not file_id:
                continue
            for text in api.content(file_id).splitlines():
                if not text.strip():
                    continue
                out = json.loads(text)
                key = out.get("custom_id")
                if key not in requests or key in answered:
                    continue
                resp = out.get("response") or {}
                if resp.get("status_code") == 200 and not out.get("error"):
                    self.cache.put(key, _generation(resp["body"]), {"batch_id": shard.batch_id})
                    answered.add(key)
                    errors.pop(key, None)
                else:
                    errors[key] = _error_of(out)
        status = str(info.get("status"))
        whole = "; ".join(str(e.get("message")) for e in ((info.get("errors") or {}).get("data") or []))[:300]
        retry, failed = [], {}
        for key in requests:
            if key in answered:
                continue
            retryable, why = errors.get(key, (status != "failed", f"batch {status} without an answer for this row"
                                              + (f" ({whole})" if whole else "")))
            if retryable and shard.round < self.settings[shard.who].max_rounds:
                retry.append(key)
            else:
                failed[key] = why if retryable is False else f"{why} (after {shard.round} round(s))"
        if retry:
            child = f"{shard.name.split('.r')[0]}.r{shard.round + 1}"
            if child not in self.ledger.shards():
                self._new_shard(child, shard.who, shard.round + 1, [json.dumps(requests[k], sort_keys=True,
                                                                               ensure_ascii=False) for k in retry])
        self.ledger.record("collected", shard.name, status=status, ok=len(answered), retry=retry, failed=failed)
        log.info("batch %s (%s) %s: %d answered, %d resubmitted, %d failed", shard.batch_id, shard.name, status,
                 len(answered), len(retry), len(failed))

    def outcome(self) -> BatchOutcome:
        """Batch ids and failed keys per asker, from the ledger."""
        ids: dict[str, list[str]] = {}
        failed: dict[str, dict[str, str]] = {}
        ok = 0
        for s in self.ledger.shards().values():
            if s.batch_id:
                ids.setdefault(s.who, []).append(s.batch_id)
            failed.setdefault(s.who, {}).update(s.failed)
            ok += s.ok
        return BatchOutcome(ids, failed, sum(len(v) for v in ids.values()), ok)


def run_batch_requests(requests: Iterable[BatchRequest], ledger_uri: str, cache_uri: str,
                       askers: dict[str, tuple[ModelConfig, BatchConfig, float, float]],
                       fs: pafs.FileSystem | None = None) -> dict[str, dict[str, Any]]:
    """Plan ``requests`` into the ledger at ``ledger_uri`` and run every batch of it to the end.

    Args:
        askers: name -> (model, batch settings, online input price, online output price).
        fs: the filesystem ``ledger_uri`` is a path on (the run's); None = resolve it.

    Returns:
        name -> the :class:`~cogumi.endpoints.metered.BatchBilling` fields (JSON-ready), for the endpoints.
    """
    ledger = BatchLedger(ledger_uri, fs)
    apis = {who: BatchAPI(model) for who, (model, _, _, _) in askers.items()}
    runner = BatchRunner(ledger, apis, {who: a[1] for who, a in askers.items()}, ResponseCache(cache_uri))
    try:
        planned = runner.plan(requests)
        waits = [a[1].max_wait_s for a in askers.values() if a[1].max_wait_s is not None]
        out = runner.run(max(waits) if waits else None)
    finally:
        for api in apis.values():
            api.close()
    log.info("batch mode: %d new request(s) planned, %d batch(es), %d row(s) answered", planned, out.submitted,
             out.rows_ok)
    billing = {}
    for who, (_, settings, price_in, price_out) in askers.items():
        bin_, bout = settings.prices(price_in, price_out)
        billing[who] = {"batch_ids": out.batch_ids.get(who, []), "failed": out.failed.get(who, {}),
                        "price_in": bin_, "price_out": bout}
    return billing


def billing_of(spec: dict[str, Any] | None) -> BatchBilling | None:
    """A :class:`~cogumi.endpoints.metered.BatchBilling` from :func:`run_batch_requests`' JSON-ready form."""
    if spec is None:
        return None
    return BatchBilling(frozenset(spec["batch_ids"]), dict(spec["failed"]), spec["price_in"], spec["price_out"])
