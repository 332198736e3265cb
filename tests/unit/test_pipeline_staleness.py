"""Stage inputs are the content of what a stage reads: retrained weights at the same path rerun an evaluation;
unchanged weights are skipped without reading them again; a missing or unreadable hand-off file is an error."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from cogumi.artifacts import DigestCache, RunDir, digest_path, resolve_filesystem
from cogumi.config import load_config
from cogumi.errors import ArtifactError
from tests.support.weights import perturb_weights


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COGUMI_CACHE", str(tmp_path / "cache"))


def test_a_standalone_benchmark_reruns_after_retraining_and_skips_when_unchanged(tmp_path, tiny_llama_dir):
    from cogumi.evaluate.benchmark import benchmark_stage

    student = tmp_path / "run" / "train" / "merged"
    shutil.copytree(tiny_llama_dir, student)
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=r", "student.backend=transformers",
                             f"student.model={student}", "student.device=cpu", "evaluate.benchmark.parts=[perplexity]",
                             "evaluate.benchmark.perplexity.max_tokens=48", "evaluate.benchmark.perplexity.max_length=32",
                             "evaluate.benchmark.perplexity.stride=32"])
    first = benchmark_stage(cfg)
    assert first["skipped"] is False
    manifest = RunDir.open(str(tmp_path), "r").stage("benchmark").manifest()
    assert manifest is not None and manifest.inputs == {"student": digest_path(str(student))}
    assert benchmark_stage(cfg)["skipped"] is True  # same weights: up to date

    perturb_weights(student, student, noise=0.5, seed=1)  # same path, same config, new weights (a retrain)
    again = benchmark_stage(cfg)
    assert again["skipped"] is False
    assert again["results"]["perplexity"]["perplexity"] != first["results"]["perplexity"]["perplexity"]
    assert benchmark_stage(cfg)["skipped"] is True


def test_file_digests_are_cached_by_size_and_mtime_and_read_again_when_they_change(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    (model / "config.json").write_text("{}")
    first = digest_path(str(model))
    fs, path = resolve_filesystem(str(model))
    sidecar = DigestCache.for_tree(fs, path).sidecar
    entries = json.loads(sidecar.read_text())
    assert set(entries) == {str(weights), str(model / "config.json")}
    # the cache is what answers while size and mtime stand: a planted digest is returned as is
    entries[str(weights)][2] = "planted"
    sidecar.write_text(json.dumps(entries))
    assert digest_path(str(model)) != first
    # new content at the same path (same size, new mtime) is read again
    weights.write_bytes(b"b" * 1000)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000_000))
    changed = digest_path(str(model))
    assert changed not in (first,) and json.loads(sidecar.read_text())[str(weights)][2] != "planted"
    assert changed == digest_path(str(model))  # and cached again
    # the sidecar lives in the cache folder, never inside the model
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "model.safetensors"]


def test_an_unreadable_or_missing_hand_off_file_is_an_error_not_zero_records(tmp_path):
    from cogumi.pipeline.stages import count_records

    run = RunDir.open(str(tmp_path), "r")
    with pytest.raises(ArtifactError, match="has not finished"):
        count_records(run, "compare", "failures.jsonl")
    with run.stage("compare").begin("h"):
        pass
    with pytest.raises(ArtifactError, match="finished without its output failures.jsonl"):
        count_records(run, "compare", "failures.jsonl")
    (tmp_path / "r" / "compare" / "failures.jsonl").mkdir()  # there, but not readable as a file
    with pytest.raises(ArtifactError, match="cannot read failures.jsonl of stage 'compare'"):
        count_records(run, "compare", "failures.jsonl")
    (tmp_path / "r" / "compare" / "failures.jsonl").rmdir()
    (tmp_path / "r" / "compare" / "failures.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    assert count_records(run, "compare", "failures.jsonl") == 2
    (tmp_path / "r" / "compare" / "failures.jsonl").write_text("")
    assert count_records(run, "compare", "failures.jsonl") == 0  # the producer wrote it empty: no failures
