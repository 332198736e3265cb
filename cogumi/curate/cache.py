"""Persistent response cache: a finished call is never paid for twice.

Keyed on ``(endpoint, model, messages, params)``; one small JSON file per entry
under ``<root>/<key[:2]>/<key>.json`` on any pyarrow filesystem, so every Ray
worker (and a rerun, or a resumed run) sees the same cache without a server.
Local writes go to a temporary file first and are renamed into place, so a run
killed mid-write leaves no half entry; an unreadable entry counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from dataclasses import asdict
from typing import Any

import pyarrow.fs as pafs

from cogumi.artifacts import resolve_filesystem
from cogumi.models.inference import Generation, Message, SamplingParams, Usage


def cache_key(endpoint: str, model: str, messages: list[Message], params: SamplingParams) -> str:
    """SHA-256 of the call's identity (everything that changes the answer)."""
    payload = {"endpoint": endpoint, "model": model, "messages": messages, "params": asdict(params)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    """Get/put generations by key.

    Args:
        uri: cache folder (local path or URI).
    """

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.root = resolve_filesystem(uri)
        self.fs.create_dir(self.root, recursive=True)
        self._local = isinstance(self.fs, pafs.LocalFileSystem)

    def _path(self, key: str) -> str:
        return posixpath.join(self.root, key[:2], f"{key}.json")

    def get(self, key: str) -> Generation | None:
        """The stored generation, or None (absent or unreadable)."""
        path = self._path(key)
        try:
            with self.fs.open_input_stream(path) as f:
                data = json.loads(f.read().decode())
            return Generation(text=data["text"], finish_reason=data["finish_reason"],
                              usage=Usage(**data["usage"]), model=data["model"], backend=data["backend"],
                              latency_s=float(data["latency_s"]))
        except (FileNotFoundError, OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, gen: Generation, extra: dict[str, Any] | None = None) -> None:
        """Store ``gen`` under ``key`` (atomically on local disks)."""
        path = self._path(key)
        body = json.dumps({"text": gen.text, "finish_reason": gen.finish_reason,
                           "usage": {"prompt_tokens": gen.usage.prompt_tokens,
                                     "completion_tokens": gen.usage.completion_tokens},
                           "model": gen.model, "backend": gen.backend, "latency_s": gen.latency_s,
                           **(extra or {})}, ensure_ascii=False).encode()
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        if self._local:
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(body)
            os.replace(tmp, path)
        else:
            with self.fs.open_output_stream(path) as f:
                f.write(body)

    def __len__(self) -> int:
        sel = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        return sum(1 for i in self.fs.get_file_info(sel) if i.path.endswith(".json"))
