"""Persistent response cache: a finished call is never paid for twice.

Keyed on ``(endpoint, model, messages, params)``; one small JSON file per entry
under ``<root>/<key[:2]>/<key>.json`` on any pyarrow filesystem, so every Ray
worker on every node (and a rerun, or a resumed run) sees the same cache without
a server or a lock. (A single SQLite file or journal would need one writer, or a
local disk shared by every worker.)

The endpoint stores an answer the moment it arrives, before anything uses it, so a
run killed at any later point has it. Local writes go to a temporary file that is
fsynced and renamed into place, then the folder is fsynced: an entry is either
whole and durable (even across a power loss) or absent. An object store's PUT is
durable when it returns. An unreadable entry counts as a miss.
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
        entry = self.lookup(key)
        return entry[0] if entry is not None else None

    def lookup(self, key: str) -> tuple[Generation, dict[str, Any]] | None:
        """The stored generation with the extra fields stored beside it (e.g. ``batch_id``), or None."""
        path = self._path(key)
        try:
            with self.fs.open_input_stream(path) as f:
                data = json.loads(f.read().decode())
            gen = Generation(text=data.pop("text"), finish_reason=data.pop("finish_reason"),
                             usage=Usage(**data.pop("usage")), model=data.pop("model"), backend=data.pop("backend"),
                             latency_s=float(data.pop("latency_s")))
            return gen, data
        except (FileNotFoundError, OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def put(self, key: str, gen: Generation, extra: dict[str, Any] | None = None) -> None:
        """Store ``gen`` under ``key`` (atomically and durably on local disks)."""
        path = self._path(key)
        body = json.dumps({"text": gen.text, "finish_reason": gen.finish_reason,
                           "usage": {"prompt_tokens": gen.usage.prompt_tokens,
                                     "completion_tokens": gen.usage.completion_tokens},
                           "model": gen.model, "backend": gen.backend, "latency_s": gen.latency_s,
                           **(extra or {})}, ensure_ascii=False).encode()
        if self._local:
            durable_write(path, body)
        else:
            self.fs.create_dir(posixpath.dirname(path), recursive=True)
            with self.fs.open_output_stream(path) as f:
                f.write(body)

    def __len__(self) -> int:
        sel = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        return sum(1 for i in self.fs.get_file_info(sel) if i.path.endswith(".json"))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: str, body: bytes) -> None:
    """Write ``body`` to ``path`` atomically and durably (fsync file, rename, fsync folder)."""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        os.makedirs(folder, exist_ok=True)
        _fsync_dir(os.path.dirname(folder))
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(folder)
