"""A real local server for the OpenAI files + batches endpoints (and online chat), with fault injection.

It extends :class:`~tests.support.openai_server.LocalOpenAIServer` (online
``/v1/chat/completions`` stays) with the Batch API's shape:

- ``POST /v1/files`` (multipart, ``purpose=batch``), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``;
- ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET /v1/batches`` (list), ``POST /v1/batches/{id}/cancel``.

A batch is ``validating`` then ``in_progress``; ``delay_s`` after it was created a worker thread
answers every line with the backend and the batch becomes ``completed`` with an output file
(200 answers) and an error file (the rest). Faults are queued per batch, in creation order:
``server.batch_faults.append({"fail_rows": 2, "status": 500})`` fails the first two rows of
the next batch with that status, ``{"expire_after": 3}`` answers three rows and then expires the
batch (the others get ``batch_expired``), ``{"reject": "why"}`` fails validation (no row runs).

Accounting, as a provider would bill: ``server.submissions`` lists every batch created (id,
input file, custom ids) and ``server.batch_paid`` every answered row (custom id, batch, usage).
:meth:`duplicate_submissions` and :meth:`duplicate_paid_rows` count what was sent or paid twice.

Run it for the embedded demo's batch mode: ``python -m tests.support.batch_server --port 8089``
(answers with the embedded SmolLM2 through llama.cpp; ``--canned`` for instant canned answers).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, deque
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from cogumi.models.inference import InferenceBackend
from tests.support.openai_server import LocalOpenAIServer, _params


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body (no extra dependency)."""
    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    out = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        out[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return out


class LocalBatchServer(LocalOpenAIServer):
    """uvicorn in a background thread serving the OpenAI files + batches endpoints (see the module docstring).

    Args:
        backend: answers every request.
        delay_s: seconds from a batch's creation until it is processed.
    """

    def __init__(self, backend: InferenceBackend, model_name: str = "local-teacher", delay_s: float = 0.5):
        self.delay_s = delay_s
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_faults: deque[dict[str, Any]] = deque()
        self.submissions: list[dict[str, Any]] = []
        self.batch_paid: list[dict[str, Any]] = []
        super().__init__(backend, model_name)

    # accounting -----------------------------------------------------------------------------
    def duplicate_submissions(self) -> int:
        """Requests (custom ids) submitted in more than one batch that answered them... or not: sent twice."""
        sent = Counter(k for s in self.submissions for k in s["custom_ids"])
        return sum(n - 1 for n in sent.values() if n > 1)

    def duplicate_paid_rows(self) -> int:
        paid = Counter(p["custom_id"] for p in self.batch_paid)
        return sum(n - 1 for n in paid.values() if n > 1)

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Wait until no batch is still being processed."""
        deadline = time.time() + timeout_s
        while any(b["status"] in ("validating", "in_progress", "finalizing") for b in self.batches.values()):
            if time.time() > deadline:
                raise TimeoutError("batches still running")
            time.sleep(0.05)

    # files ----------------------------------------------------------------------------------
    def _file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = f"file-{uuid.uuid4().hex[:24]}"
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
               "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[fid] = {"meta": obj, "data": data}
        return obj

    # batches --------------------------------------------------------------------------------
    def _process(self, batch_id: str) -> None:
        time.sleep(self.delay_s)
        b = self.batches[batch_id]
        with self._lock:
            if b["status"] == "cancelling":
                b.update(status="cancelled", cancelled_at=int(time.time()))
                return
            b.update(status="in_progress", in_progress_at=int(time.time()))
            fault = b.pop("_fault")
        if "reject" in fault:
            b.update(status="failed", failed_at=int(time.time()),
                     errors={"object": "list", "data": [{"code": "invalid_request", "message": fault["reject"],
                                                         "param": None, "line": None}]})
            return
        lines = [json.loads(x) for x in self.files[b["input_file_id"]]["data"].decode().splitlines() if x.strip()]
        outputs, errors = [], []
        expire_after = fault.get("expire_after")
        for i, req in enumerate(lines):
            rid = f"batch_req_{uuid.uuid4().hex[:16]}"
            if expire_after is not None and i >= expire_after:
                errors.append({"id": rid, "custom_id": req["custom_id"], "response": None,
                               "error": {"code": "batch_expired",
                                         "message": "This request could not be executed before the completion "
                                                    "window expired."}})
                continue
            if i < fault.get("fail_rows", 0):
                status = int(fault.get("status", 500))
                errors.append({"id": rid, "custom_id": req["custom_id"], "error": None,
                               "response": {"status_code": status, "request_id": rid, "body": {"error": {
                                   "message": f"injected failure {status}", "type": "server_error",
                                   "code": "server_error" if status >= 500 else "invalid_request"}}}})
                continue
            body = req["body"]
            with self._lock:
                gen = self.backend.chat(body["messages"], _params(body))
            usage = {"prompt_tokens": gen.usage.prompt_tokens, "completion_tokens": gen.usage.completion_tokens,
                     "total_tokens": gen.usage.total_tokens}
            self.batch_paid.append({"custom_id": req["custom_id"], "batch_id": batch_id,
                                    "structured": body.get("response_format") is not None, **usage})
            outputs.append({"id": rid, "custom_id": req["custom_id"], "error": None, "response": {
                "status_code": 200, "request_id": rid, "body": {
                    "id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model") or self.model_name, "usage": usage,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                                 "finish_reason": gen.finish_reason}]}}})
        out_id = self._file("".join(json.dumps(o) + "\n" for o in outputs).encode(), f"{batch_id}_output.jsonl",
                            "batch_output")["id"] if outputs else None
        err_id = self._file("".join(json.dumps(o) + "\n" for o in errors).encode(), f"{batch_id}_error.jsonl",
                            "batch_output")["id"] if errors else None
        now = int(time.time())
        b.update(output_file_id=out_id, error_file_id=err_id,
                 request_counts={"total": len(lines), "completed": len(outputs), "failed": len(errors)})
        if expire_after is not None and expire_after < len(lines):
            b.update(status="expired", expired_at=now)
        else:
            b.update(status="completed", completed_at=now, finalizing_at=now)

    def _public(self, b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    def _build_app(self) -> FastAPI:
        app = super()._build_app()

        @app.post("/v1/files")
        async def upload(request: Request):
            parts = _multipart(request.headers.get("content-type", ""), await request.body())
            if "file" not in parts:
                return JSONResponse({"error": {"message": "no file part", "type": "invalid_request_error"}}, 400)
            filename, data = parts["file"]
            purpose = parts.get("purpose", (None, b"batch"))[1].decode()
            return self._file(data, filename or "upload.jsonl", purpose)

        @app.get("/v1/files/{file_id}")
        def file_meta(file_id: str):
            f = self.files.get(file_id)
            return f["meta"] if f else JSONResponse({"error": {"message": "no such file"}}, 404)

        @app.get("/v1/files/{file_id}/content")
        def file_content(file_id: str):
            f = self.files.get(file_id)
            if f is None:
                return JSONResponse({"error": {"message": "no such file"}}, 404)
            return PlainTextResponse(f["data"].decode(), media_type="application/octet-stream")

        @app.post("/v1/batches")
        async def create(request: Request):
            body = await request.json()
            f = self.files.get(body.get("input_file_id", ""))
            if f is None:
                return JSONResponse({"error": {"message": "input file not found", "type": "invalid_request_error"}},
                                    400)
            bid = f"batch_{uuid.uuid4().hex[:24]}"
            ids = [json.loads(x)["custom_id"] for x in f["data"].decode().splitlines() if x.strip()]
            with self._lock:
                fault = self.batch_faults.popleft() if self.batch_faults else {}
            b = {"id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
                 "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
                 "status": "validating", "output_file_id": None, "error_file_id": None,
                 "created_at": int(time.time()), "expires_at": int(time.time()) + 86400,
                 "metadata": body.get("metadata") or {}, "_fault": fault,
                 "request_counts": {"total": len(ids), "completed": 0, "failed": 0}}
            self.batches[bid] = b
            self.submissions.append({"batch_id": bid, "input_file_id": body["input_file_id"], "custom_ids": ids})
            threading.Thread(target=self._process, args=(bid,), daemon=True).start()
            return self._public(b)

        @app.get("/v1/batches/{batch_id}")
        def retrieve(batch_id: str):
            b = self.batches.get(batch_id)
            return self._public(b) if b else JSONResponse({"error": {"message": "no such batch"}}, 404)

        @app.post("/v1/batches/{batch_id}/cancel")
        def cancel(batch_id: str):
            b = self.batches.get(batch_id)
            if b is None:
                return JSONResponse({"error": {"message": "no such batch"}}, 404)
            if b["status"] in ("validating", "in_progress"):
                b["status"] = "cancelling"
            return self._public(b)

        @app.get("/v1/batches")
        def list_batches(limit: int = 20, after: str | None = None):
            ordered = sorted(self.batches.values(), key=lambda b: b["created_at"], reverse=True)
            ids = [b["id"] for b in ordered]
            start = ids.index(after) + 1 if after in ids else 0
            page = [self._public(b) for b in ordered[start:start + limit]]
            return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None, "has_more": start + limit < len(ordered)}

        return app


def main() -> None:
    """Serve until Ctrl-C (for the embedded demo's batch mode)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--delay-s", type=float, default=2.0)
    parser.add_argument("--canned", action="store_true", help="instant canned answers instead of SmolLM2")
    args = parser.parse_args()
    if args.canned:
        from tests.support.canned_backend import CannedBackend

        backend: Any = CannedBackend()
    else:
        from cogumi.config_base import ModelConfig
        from cogumi.models.inference import make_backend

        backend = make_backend(ModelConfig(backend="llamacpp"))
    server = LocalBatchServer(backend, delay_s=args.delay_s)
    server.port, server.base_url = args.port, f"http://127.0.0.1:{args.port}/v1"
    server._server.config.port = args.port
    server.start()
    print(f"batch server on {server.base_url} (teacher: backend openai, base_url {server.base_url}, mode batch)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
