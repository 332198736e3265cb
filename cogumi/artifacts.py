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
import logging
import os
import platform
import posixpath
import socket
import time
import uuid
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field

from cogumi.errors import ArtifactError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RUN_FILE = "run.json"
STAGE_PREFIX = "stage:"  # ``stage:<stage>/<output>``: an output of another stage in the same run
TRACKED_PACKAGES = ("cogumi", "torch", "transformers", "peft", "trl", "ray", "llama_cpp_python",
                    "llmcompressor", "bitsandbytes", "pyarrow", "openai")


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return (filesystem, path) for a local path or a URI pyarrow or fsspec understands."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    try:
        return pafs.FileSystem.from_uri(uri)
    except ValueError:  # ArrowInvalid (a ValueError) for schemes pyarrow lacks: fsspec may know them
        pass
    except OSError as exc:  # a scheme pyarrow knows, failing (credentials, region, endpoint): say so
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ArtifactError(f"cannot open filesystem for '{uri}' ({why})", uri,
                            "check the URI, the credentials and the endpoint (AWS_ENDPOINT_URL_S3 for an "
                            "S3-compatible server)") from None
    try:
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, path = fsspec.core.url_to_fs(uri)
        return PyFileSystem(FSSpecHandler(fs)), path
    except Exception as exc:  # noqa: BLE001
        raise ArtifactError(f"cannot open filesystem for '{uri}' ({exc})", "run.root",
                            "use a local path or an s3://, gs:// or hdfs:// URI with credentials set") from None


def stage_ref(stage: str, output: str) -> str:
    """The reference ``stage:<stage>/<output>`` to an output of ``stage`` in the current run."""
    return f"{STAGE_PREFIX}{stage}/{output}"


@dataclass(frozen=True)
class Location:
    """A file or folder on some filesystem, with the name the user gave it."""

    fs: pafs.FileSystem
    path: str
    ref: str

    def exists(self) -> bool:
        """True when a file or folder is there."""
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def uri(self) -> str:
        """A string Ray and pyarrow can open again (local path or scheme://path)."""
        name = self.fs.type_name
        return self.path if name == "local" else f"{name}://{self.path}"


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

    def resolve(self, ref: str, where: str = "config") -> Location:
        """Where ``ref`` lives: ``stage:<stage>/<output>`` on this run's filesystem, anything else as a path/URI.

        Args:
            ref: ``stage:<stage>/<output>`` (e.g. ``stage:train/merged``), a local path or a URI.
            where: the config key that named it (for error messages).

        Raises:
            ArtifactError: a malformed ``stage:`` reference (empty, or climbing out with ``..``).
        """
        if not ref.startswith(STAGE_PREFIX):
            fs, path = resolve_filesystem(ref)
            return Location(fs, path, ref)
        rel = ref[len(STAGE_PREFIX):].strip("/")
        if not rel or ".." in rel.split("/"):
            raise ArtifactError(f"bad stage reference '{ref}'", where,
                                "write stage:<stage>/<output>, e.g. stage:curate/curated.parquet")
        return Location(self.fs, posixpath.join(self.path, rel), ref)

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

    def finished_manifest(self) -> Manifest:
        """The manifest of a stage that finished.

        Raises:
            ArtifactError: the stage never ran, is running, or failed.
        """
        manifest = self.manifest()
        if manifest is None or manifest.status != "finished":
            raise ArtifactError(f"stage '{self.name}' has not finished", self.path,
                                f"run the '{self.name}' stage first")
        return manifest

    def digest(self) -> str:
        """Digest of a finished stage's outputs, for use as another stage's input."""
        manifest = self.finished_manifest()
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

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
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


def digest_tree(fs: pafs.FileSystem, path: str, exclude: AbstractSet[str] = frozenset(),
                cache: DigestCache | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` for every file under ``path`` (or for ``path`` itself).

    Args:
        cache: reuse digests of files whose (path, size, mtime) did not change (see :class:`DigestCache`).
    """
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        items, base = [info], posixpath.dirname(path)
    elif info.type == pafs.FileType.Directory:
        items, base = fs.get_file_info(pafs.FileSelector(path, recursive=True)), path
    else:
        return {}
    out = {}
    for item in items:
        rel = posixpath.relpath(item.path, base)
        if item.type == pafs.FileType.File and rel not in exclude:
            out[rel] = cache.digest(fs, item) if cache is not None else digest_file(fs, item.path)
    if cache is not None:
        cache.save()
    return dict(sorted(out.items()))


def digest_path(uri: str) -> str:
    """One content digest for a file or folder given as a local path or URI (a stage input, a model's weights).

    Every file is read (SHA-256) the first time; later calls reuse a file's digest while its
    size and modification time are unchanged (a sidecar in the cache folder), so a rerun
    over unchanged multi-GB weights is cheap and retrained weights at the same path are seen.
    """
    fs, path = resolve_filesystem(uri)
    tree = digest_tree(fs, path, cache=DigestCache.for_tree(fs, path))
    if not tree:
        raise ArtifactError(f"input '{uri}' does not exist or is empty", uri, "check the path")
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def cache_root() -> Path:
    """Cogumi's cache folder (``$COGUMI_CACHE`` or ``~/.cache/cogumi``)."""
    return Path(os.environ.get("COGUMI_CACHE", Path.home() / ".cache" / "cogumi"))


class DigestCache:
    """File digests keyed by (filesystem, path, size, mtime), kept in one small JSON sidecar per tree.

    The sidecar lives in the cache folder (never beside the files: a model folder's own
    digest must not change because it was digested). A file whose size or mtime changed,
    or whose filesystem reports no mtime, is read again. An unwritable cache only costs
    time: it is logged, never fatal.
    """

    def __init__(self, sidecar: Path):
        self.sidecar = sidecar
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        try:
            loaded = json.loads(sidecar.read_text())
            self.entries = loaded if isinstance(loaded, dict) else {}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("digest cache %s unreadable (%s); digesting every file again", sidecar, exc)

    @classmethod
    def for_tree(cls, fs: pafs.FileSystem, path: str) -> DigestCache:
        """The cache of the file or folder ``path`` on ``fs``."""
        key = hashlib.sha256(f"{fs.type_name}:{path}".encode()).hexdigest()[:32]
        return cls(cache_root() / "digests" / f"{key}.json")

    def digest(self, fs: pafs.FileSystem, info: pafs.FileInfo) -> str:
        """SHA-256 of the file ``info`` describes, read only when its size or mtime changed."""
        stamp = [info.size, info.mtime_ns]
        entry = self.entries.get(info.path)
        if info.mtime_ns is not None and entry and entry[:2] == stamp:
            return str(entry[2])
        sha = digest_file(fs, info.path)
        if info.mtime_ns is not None:
            self.entries[info.path], self.dirty = [*stamp, sha], True
        return sha

    def save(self) -> None:
        """Write the sidecar when something changed (atomically; a failure is logged)."""
        if not self.dirty:
            return
        try:
            self.sidecar.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.sidecar.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.sidecar)
            self.dirty = False
        except OSError as exc:
            log.warning("cannot write the digest cache %s (%s); the next run digests these files again",
                        self.sidecar, exc)


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def _read(fs: pafs.FileSystem, path: str) -> str:
    with fs.open_input_stream(path, compression=None) as f:
        return f.read().decode()


def _write(fs: pafs.FileSystem, path: str, text: str) -> None:
    with fs.open_output_stream(path) as f:
        f.write(text.encode())
