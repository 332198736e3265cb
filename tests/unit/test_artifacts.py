"""Run directories, manifests, skip decisions and run isolation."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from cogumi.artifacts import RunDir, digest_path
from cogumi.errors import ArtifactError


def _finish(stage, cfg_hash="h1", inputs=None, text="hello"):
    with stage.begin(cfg_hash, inputs) as rec:
        rec.write_text("out/data.txt", text)
        rec.metrics["rows"] = 3
        rec.method["backend"] = "llamacpp"
    return stage.manifest()


def test_stage_lifecycle_writes_a_complete_manifest(tmp_path):
    run = RunDir.open(str(tmp_path), "r1")
    m = _finish(run.stage("curate"), inputs={"prompts": "abc"})
    assert m.status == "finished" and m.run_name == "r1"
    assert set(m.outputs) == {"out/data.txt"} and len(m.outputs["out/data.txt"]) == 64
    assert m.metrics == {"rows": 3} and m.method == {"backend": "llamacpp"}
    assert m.versions["pyarrow"] and m.started_at and m.ended_at and m.duration_s >= 0
    on_disk = json.loads((tmp_path / "r1" / "curate" / "manifest.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["inputs"] == {"prompts": "abc"}
    assert run.stages() == ["curate"]


def test_failed_stage_is_recorded_and_not_skippable(tmp_path):
    stage = RunDir.open(str(tmp_path), "r1").stage("train")
    with pytest.raises(RuntimeError):
        with stage.begin("h1") as rec:
            rec.write_text("partial.txt", "half")
            raise RuntimeError("worker died")
    m = stage.manifest()
    assert m.status == "failed" and "worker died" in m.error
    assert m.outputs == {"partial.txt": m.outputs["partial.txt"]}  # finished work is kept and listed
    assert not stage.can_skip("h1")


def test_skip_needs_same_config_and_inputs(tmp_path):
    stage = RunDir.open(str(tmp_path), "r1").stage("curate")
    _finish(stage, "h1", {"prompts": "d1"})
    assert stage.can_skip("h1", {"prompts": "d1"})
    assert not stage.can_skip("h2", {"prompts": "d1"})
    assert not stage.can_skip("h1", {"prompts": "d2"})
    assert not RunDir.open(str(tmp_path), "r1").stage("train").can_skip("h1")


def test_stage_digest_changes_with_outputs(tmp_path):
    run = RunDir.open(str(tmp_path), "r1")
    _finish(run.stage("a"), text="one")
    d1 = run.stage("a").digest()
    _finish(run.stage("a"), text="two")
    assert run.stage("a").digest() != d1
    with pytest.raises(ArtifactError, match="has not finished"):
        run.stage("never").digest()


def test_reopening_a_run_keeps_its_identity(tmp_path):
    a = RunDir.open(str(tmp_path), "r1")
    _finish(a.stage("curate"))
    b = RunDir.open(str(tmp_path), "r1")
    assert b.run_id == a.run_id and b.stage("curate").can_skip("h1")


def test_refuses_to_mix_runs(tmp_path):
    r1, r2 = RunDir.open(str(tmp_path), "r1"), RunDir.open(str(tmp_path), "r2")
    _finish(r1.stage("curate"))
    shutil.copytree(tmp_path / "r1" / "curate", tmp_path / "r2" / "curate")
    with pytest.raises(ArtifactError, match="another run.*refusing to mix runs"):
        r2.stage("curate").manifest()


def test_run_json_with_another_name_is_refused(tmp_path):
    RunDir.open(str(tmp_path), "r1")
    info = tmp_path / "r1" / "run.json"
    data = json.loads(info.read_text())
    data["name"] = "other"
    info.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="belongs to run 'other'"):
        RunDir.open(str(tmp_path), "r1")


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    stage = RunDir.open(str(tmp_path), "r1").stage("curate")
    _finish(stage)
    (tmp_path / "r1" / "curate" / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        stage.manifest()


def test_works_on_a_non_local_filesystem_uri():
    """memory:// goes through fsspec -> pyarrow PyFileSystem, the same path as s3:// or gs://."""
    root = f"memory://cogumi-{uuid.uuid4().hex[:8]}"
    run = RunDir.open(root, "r1")
    m = _finish(run.stage("curate"))
    assert m.status == "finished"
    assert RunDir.open(root, "r1").stage("curate").can_skip("h1")


def test_digest_path_of_inputs(tmp_path):
    f = tmp_path / "prompts.jsonl"
    f.write_text('{"prompt": "a"}\n')
    d1 = digest_path(str(f))
    f.write_text('{"prompt": "b"}\n')
    assert digest_path(str(f)) != d1
    with pytest.raises(ArtifactError, match="does not exist"):
        digest_path(str(tmp_path / "missing"))


def _running_manifest_of(tmp_path, pid, **over):
    """A stage left ``running`` by process ``pid`` (as a kill -9 leaves it)."""
    import os
    import socket

    from cogumi.artifacts import process_started

    stage = RunDir.open(str(tmp_path), "r1").stage("curate")
    rec = stage.begin("h1")
    rec.manifest = rec.manifest.model_copy(update={"pid": pid, "host": socket.gethostname(),
                                                   "pid_started": process_started(pid), **over})
    rec.fs.create_dir(stage.path, recursive=True)
    rec._save()
    assert stage.manifest().status == "running" and os.getpid() != pid
    return stage


def test_running_manifest_records_who_runs_it(tmp_path):
    import os
    import socket

    stage = RunDir.open(str(tmp_path), "r1").stage("curate")
    with stage.begin("h1") as rec:
        m = stage.manifest()
        assert m.status == "running" and m.pid == os.getpid() and m.host == socket.gethostname()
        assert rec.previous is None and m.previous is None
    assert stage.manifest().status == "finished"


def test_a_killed_run_is_named_on_the_next_run(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stage = _running_manifest_of(tmp_path, dead.pid)
    started = stage.manifest().started_at
    with stage.begin("h1", resume_note="resuming from its cached calls") as rec:
        expected = f"the previous run (pid {dead.pid}, started {started}) was killed; resuming from its cached calls"
        assert rec.previous == expected
        assert stage.manifest().previous == expected
    assert stage.manifest().previous == expected and stage.manifest().status == "finished"


def test_a_live_run_of_the_same_stage_is_refused(tmp_path):
    import subprocess
    import sys

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stage = _running_manifest_of(tmp_path, live.pid)
        with pytest.raises(ArtifactError, match=f"being run by another process \\(pid {live.pid}"):
            with stage.begin("h1"):
                pass
        assert stage.manifest().pid == live.pid  # left alone
    finally:
        live.kill()
        live.wait()


def test_a_reused_pid_or_another_host_is_not_taken_for_a_live_run(tmp_path):
    import os

    stage = _running_manifest_of(tmp_path, os.getppid(), pid_started="1")  # alive, but a different process
    with stage.begin("h1") as rec:
        assert "was killed" in rec.previous
    stage = _running_manifest_of(tmp_path, os.getppid(), host="elsewhere")
    with stage.begin("h1") as rec:
        assert "on elsewhere" in rec.previous and "cannot be checked" in rec.previous



def test_a_filesystem_pyarrow_knows_but_cannot_open_is_an_error_naming_the_uri():
    """pyarrow's own failure (here: hdfs without a JVM) is reported, not hidden behind an fsspec fallback."""
    from cogumi.artifacts import resolve_filesystem
    from cogumi.errors import ArtifactError

    with pytest.raises(ArtifactError, match="cannot open filesystem for 'hdfs://127.0.0.1:9/runs'"):
        resolve_filesystem("hdfs://127.0.0.1:9/runs")
