"""Run directories and stage manifests on any pyarrow filesystem.

Layout: ``<root>/<run-name>/run.json`` plus one folder per stage, each with a
``manifest.json`` recording the config hash, input and output digests, metrics,
package versions, the method that really ran, start/end time and status. While
a stage runs, its manifest also names the process (pid, host, start time), so the
next attempt can tell a killed run (it says so, in the log and the manifest) from
a live one (it refuses to run over it).

    run = RunDir.open("runs", "local")
    stage = run.stage("curate")
    if not stage.can_skip(cfg_hash, inputs):
        with stage.begin(cfg_hash, inputs) as rec:
            rec.write_text("stats.json", "{}")
            rec.metrics["rows"] = 10
            rec.method["teacher"] = "llamacpp"
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import posixpath
import socket
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Literal

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field

from cogumi.errors import ArtifactError

MANIFEST = "manifest.json"
RUN_FILE = "run.json"
TRACKED_PACKAGES = ("cogumi", "torch", "transformers", "peft", "trl", "ray", "llama_cpp_python",
                    "llmcompressor", "bitsandbytes", "pyarrow", "openai")


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return (filesystem, path) for a local path or a URI pyarrow or fsspec understands."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError):  # ArrowInvalid (a ValueError) for schemes pyarrow lacks
        pass
    try:
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, path = fsspec.core.url_to_fs(uri)
        return PyFileSystem(FSSpecHandler(fs)), path
    except Exception as exc:  # noqa: BLE001
        raise ArtifactError(f"cannot open filesystem for '{uri}' ({exc})", "run.root",
                            "use a local path or an s3://, gs:// or hdfs:// URI with credentials set") from None


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest(BaseModel):
    """What one stage did, written to ``<stage>/manifest.json``."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    run_name: str
    stage: str
    status: Literal["running", "finished", "failed"]
    config_hash: str
    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    method: dict[str, str] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    started_at: str
    ended_at: str | None = None
    duration_s: float | None = None
    error: str | None = None
    # who runs it: written while running, so that the next run can tell a killed run from a live one
    pid: int | None = None
    host: str | None = None
    pid_started: str | None = None
    previous: str | None = None  # what happened to the attempt this one replaced (e.g. it was killed)


class RunDir:
    """A run directory: ``<root>/<name>/`` with a ``run.json`` that gives it an identity."""

    def __init__(self, fs: pafs.FileSystem, path: str, name: str, run_id: str):
        self.fs, self.path, self.name, self.run_id = fs, path, name, run_id

    @classmethod
    def open(cls, root: str, name: str) -> RunDir:
        """Open (creating if needed) the run ``name`` under ``root``."""
        fs, base = resolve_filesystem(root)
        path = posixpath.join(base, name)
        info_path = posixpath.join(path, RUN_FILE)
        if _exists(fs, info_path):
            info = json.loads(_read(fs, info_path))
            if info.get("name") != name:
                raise ArtifactError(
                    f"run directory {path} belongs to run '{info.get('name')}', not '{name}'",
                    info_path, "choose another run.name or run.root")
            return cls(fs, path, name, info["run_id"])
        run_id = uuid.uuid4().hex
        try:
            fs.create_dir(path, recursive=True)
            _write(fs, info_path, json.dumps({"name": name, "run_id": run_id, "created_at": _now()}, indent=2))
        except OSError as exc:
            raise ArtifactError(f"cannot write the run directory ({exc})", f"{root} (run.root)",
                                "point run.root at a writable folder or bucket (and check its credentials)") from None
        return cls(fs, path, name, run_id)

    def stage(self, name: str) -> StageDir:
        """The folder of stage ``name`` in this run."""
        return StageDir(self, name)

    def stages(self) -> list[str]:
        """Names of stages that have a manifest."""
        sel = pafs.FileSelector(self.path, allow_not_found=True)
        return sorted(i.base_name for i in self.fs.get_file_info(sel)
                      if i.type == pafs.FileType.Directory
                      and _exists(self.fs, posixpath.join(i.path, MANIFEST)))


class StageDir:
    """One stage's folder; reads its manifest and decides whether the stage can be skipped."""

    def __init__(self, run: RunDir, name: str):
        self.run, self.name = run, name
        self.path = posixpath.join(run.path, name)

    def file(self, relpath: str) -> str:
        """Filesystem path of a file inside this stage."""
        return posixpath.join(self.path, relpath)

    def manifest(self) -> Manifest | None:
        """The stage's manifest, or None when the stage never started.

        Raises:
            ArtifactError: the manifest is corrupt or was written by another run.
        """
        mpath = self.file(MANIFEST)
        if not _exists(self.run.fs, mpath):
            return None
        try:
            manifest = Manifest.model_validate_json(_read(self.run.fs, mpath))
        except Exception as exc:  # noqa: BLE001
            raise ArtifactError(f"manifest of stage '{self.name}' is corrupt ({exc.__class__.__name__})",
                                mpath, "delete the stage folder to rerun it") from None
        if manifest.run_id != self.run.run_id:
            raise ArtifactError(
                f"stage '{self.name}' was written by another run ({manifest.run_name}/{manifest.run_id[:8]}),"
                f" not {self.run.name}/{self.run.run_id[:8]}; refusing to mix runs", mpath,
                "rerun the stage in this run or point run.name at the run it came from")
        return manifest

    def finished(self) -> bool:
        """True when the stage's last attempt in this run finished."""
        manifest = self.manifest()
        return manifest is not None and manifest.status == "finished"

    def digest(self) -> str:
        """Digest of a finished stage's outputs, for use as another stage's input."""
        manifest = self.manifest()
        if manifest is None or manifest.status != "finished":
            raise ArtifactError(f"stage '{self.name}' has not finished", self.path,
                                f"run the '{self.name}' stage first")
        return hashlib.sha256(json.dumps(manifest.outputs, sort_keys=True).encode()).hexdigest()

    def can_skip(self, config_hash: str, inputs: dict[str, str] | None = None) -> bool:
        """True when the stage finished with the same config hash and input digests."""
        manifest = self.manifest()
        return (manifest is not None and manifest.status == "finished"
                and manifest.config_hash == config_hash and manifest.inputs == (inputs or {}))

    def begin(self, config_hash: str, inputs: dict[str, str] | None = None,
              resume_note: str = "resuming") -> StageRecorder:
        """Start (or restart) the stage; use the result as a context manager.

        Args:
            resume_note: how this stage resumes after a killed attempt, ending the message
                ``the previous run (pid N, started T) was killed; <resume_note>``.

        Entering raises :class:`ArtifactError` while another live process on this host runs
        the stage; after a killed attempt, the recorder's ``previous`` holds the message above
        (also written to the manifest).
        """
        return StageRecorder(self, config_hash, inputs or {}, resume_note)


class StageRecorder:
    """Context manager that writes ``running`` then ``finished``/``failed`` manifests."""

    def __init__(self, stage: StageDir, config_hash: str, inputs: dict[str, str], resume_note: str = "resuming"):
        self.stage, self.fs, self.resume_note = stage, stage.run.fs, resume_note
        self.metrics: dict[str, Any] = {}
        self.method: dict[str, str] = {}
        self.previous: str | None = None
        self._t0 = time.time()
        self.manifest = Manifest(run_id=stage.run.run_id, run_name=stage.run.name, stage=stage.name,
                                 status="running", config_hash=config_hash, inputs=inputs,
                                 versions=package_versions(), started_at=_now(), pid=os.getpid(),
                                 host=socket.gethostname(), pid_started=process_started(os.getpid()))

    def __enter__(self) -> StageRecorder:
        self.previous = self.manifest.previous = self._check_previous()
        self.fs.create_dir(self.stage.path, recursive=True)
        self._save()
        return self

    def _check_previous(self) -> str | None:
        """Why the last attempt is being replaced when it never ended (None when it did, or never ran)."""
        try:
            old = self.stage.manifest()
        except ArtifactError:
            return None  # corrupt or foreign: overwritten as before
        if old is None or old.status != "running":
            return None
        if old.pid is None:
            return f"the previous run (started {old.started_at}) never finished; {self.resume_note}"
        me = self.manifest
        if old.host != me.host:
            return (f"the previous run (pid {old.pid} on {old.host}, started {old.started_at}) never finished and "
                    f"cannot be checked from {me.host}; {self.resume_note}")
        if old.pid != me.pid and process_alive(old.pid, old.pid_started):
            raise ArtifactError(
                f"stage '{self.stage.name}' is being run by another process (pid {old.pid}, started "
                f"{old.started_at}); two runs would overwrite each other", self.stage.file(MANIFEST),
                f"wait for it to finish, or stop it (kill {old.pid}) and run again")
        return f"the previous run (pid {old.pid}, started {old.started_at}) was killed; {self.resume_note}"

    def __exit__(self, exc_type, exc, tb) -> bool:
        m = self.manifest
        m.metrics, m.method = self.metrics, self.method
        m.ended_at, m.duration_s = _now(), round(time.time() - self._t0, 3)
        m.outputs = digest_tree(self.fs, self.stage.path, exclude={MANIFEST})
        if exc is None:
            m.status = "finished"
        else:
            m.status, m.error = "failed", f"{exc_type.__name__}: {exc}"
        self._save()
        return False

    def path(self, relpath: str) -> str:
        """Filesystem path for an output file (parent folders are created)."""
        full = self.stage.file(relpath)
        self.fs.create_dir(posixpath.dirname(full), recursive=True)
        return full

    def write_text(self, relpath: str, text: str) -> str:
        """Write a text output file and return its path."""
        full = self.path(relpath)
        _write(self.fs, full, text)
        return full

    def write_json(self, relpath: str, data: Any) -> str:
        """Write a JSON output file and return its path."""
        return self.write_text(relpath, json.dumps(data, indent=2, sort_keys=True, default=str))

    def _save(self) -> None:
        _write(self.fs, self.stage.file(MANIFEST), self.manifest.model_dump_json(indent=2))


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first), or None (not Linux, no process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return stat.rsplit(")", 1)[1].split()  # the name before ')' may hold spaces
    except (OSError, IndexError):
        return None


def process_started(pid: int) -> str | None:
    """An identity of process ``pid``'s start (Linux: its start time in clock ticks), or None."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def process_alive(pid: int, started: str | None = None) -> bool:
    """True when ``pid`` runs on this host and (if ``started`` is known) is the same process, not a reuse."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    fields = _proc_stat(pid)
    if fields is None:
        return True
    if fields[0] in ("Z", "X"):
        return False  # exited, not yet reaped
    return started is None or len(fields) <= 19 or fields[19] == started


def digest_file(fs: pafs.FileSystem, path: str) -> str:
    """SHA-256 of one file, streamed."""
    h = hashlib.sha256()
    with fs.open_input_stream(path, compression=None) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def digest_tree(fs: pafs.FileSystem, path: str, exclude: set[str] = frozenset()) -> dict[str, str]:
    """``{relative path: sha256}`` for every file under ``path`` (or for ``path`` itself)."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return {posixpath.basename(path): digest_file(fs, path)}
    if info.type != pafs.FileType.Directory:
        return {}
    out = {}
    for item in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        rel = posixpath.relpath(item.path, path)
        if item.type == pafs.FileType.File and rel not in exclude:
            out[rel] = digest_file(fs, item.path)
    return dict(sorted(out.items()))


def digest_path(uri: str) -> str:
    """One digest for a file or folder given as a local path or URI (a stage input)."""
    fs, path = resolve_filesystem(uri)
    tree = digest_tree(fs, path)
    if not tree:
        raise ArtifactError(f"input '{uri}' does not exist or is empty", uri, "check the path")
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def _read(fs: pafs.FileSystem, path: str) -> str:
    with fs.open_input_stream(path, compression=None) as f:
        return f.read().decode()


def _write(fs: pafs.FileSystem, path: str, text: str) -> None:
    with fs.open_output_stream(path) as f:
        f.write(text.encode())
