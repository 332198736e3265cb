"""A run whose ``run.root`` is ``s3://`` on a local S3 server: the stage hand-off never leaks a local path.

Here, in-process: manifests, ``stage:`` resolution and the consumers of a curate stage's
outputs (training's data reader, compression's reference resolver, the pipeline's record
counter, content digests, the plan's view of finished stages) all go through the run's
filesystem. The real curation on Ray over the bucket runs in the 3-node cluster test
(``tests/integration/cluster/test_s3_cluster.py``), whose workers get the credentials at start.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration

ROWS = [{"instruction": f"What is {i} + {i}?", "response": f"It is {2 * i}.", "domain": "math"} for i in range(3)]


def _curate_outputs(run) -> None:
    """A finished curate stage, written the way curation writes it (pyarrow on the run's filesystem)."""
    with run.stage("curate").begin("h", {"prompts": "p"}) as rec:
        with pq.ParquetWriter(rec.path("curated.parquet"), pa.Table.from_pylist(ROWS).schema,
                              filesystem=rec.fs) as w:
            w.write_table(pa.Table.from_pylist(ROWS))
        rec.write_text("curated.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS))
        rec.metrics["rows"] = {"input": 3, "ok": 3}


def test_the_stage_hand_off_goes_through_an_s3_run_root(local_s3, tmp_path, monkeypatch):
    from cogumi.artifacts import RunDir, digest_path, resolve_filesystem
    from cogumi.compress.pipeline import resolve_refs
    from cogumi.config import load_config
    from cogumi.pipeline.contracts import StageResult
    from cogumi.pipeline.stages import PipelinePlan, count_records, merged_dir, trained_student
    from cogumi.train.data import read_examples, resolve_ref

    monkeypatch.chdir(tmp_path)  # a URI mangled into a local path would land here as ./s3:/...
    root = f"s3://{local_s3.bucket}/runs"
    cfg = load_config(None, [f"run.root={root}", "run.name=r", "compress.model=stage:train/merged",
                             "compress.calibration.data=stage:curate/curated.parquet",
                             "compress.gguf.adapters=[stage:modifiers/adapters/code]"])
    plan = PipelinePlan(cfg)
    run = plan.run
    assert run.fs.type_name == "s3" and run.path == f"{local_s3.bucket}/runs/r"
    _curate_outputs(run)
    with run.stage("train").begin("h") as rec:
        rec.write_text("merged/config.json", "{}")
        rec.write_text("adapter/adapter_config.json", "{}")

    # manifests live in the bucket and are read back from it
    keys = local_s3.keys("runs/r/")
    for name in ("run.json", "curate/manifest.json", "curate/curated.parquet", "curate/curated.jsonl",
                 "train/manifest.json", "train/merged/config.json"):
        assert f"runs/r/{name}" in keys, keys
    manifest = json.loads(local_s3.read("runs/r/curate/manifest.json"))
    assert manifest["status"] == "finished" and set(manifest["outputs"]) == {"curated.parquet", "curated.jsonl"}
    assert RunDir.open(root, "r").stage("curate").can_skip("h", {"prompts": "p"})
    assert PipelinePlan(cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(
        update={"stages": ["compress"]})})).latest_train == "train"  # finished training found in the bucket

    # stage: references resolve to the bucket, for training, compression and the plan alike
    loc = resolve_ref("stage:curate/curated.parquet", run)
    uri = f"s3://{local_s3.bucket}/runs/r/curate/curated.parquet"
    assert loc.uri() == uri and len(read_examples(loc, "train.data")) == len(ROWS)
    c = resolve_refs(cfg, run).compress
    assert (c.model, c.calibration.data) == (f"s3://{local_s3.bucket}/runs/r/train/merged", uri)
    assert c.gguf.adapters == [f"s3://{local_s3.bucket}/runs/r/modifiers/adapters/code"]
    fs, path = resolve_filesystem(c.calibration.data)
    assert fs.type_name == "s3" and pq.read_table(path, filesystem=fs).num_rows == len(ROWS)
    assert merged_dir(run, "train") == c.model == trained_student(cfg, run, "train").model
    result = StageResult.from_summary("train", {"skipped": False}, run, ("merged", "adapter"))
    assert result.outputs == {"merged": c.model, "adapter": f"s3://{local_s3.bucket}/runs/r/train/adapter"}

    # what consumers count and digest comes from the bucket
    assert count_records(run, "curate", "curated.jsonl") == len(ROWS)
    weights = digest_path(c.model)  # a model's content digest, as evaluation stages record it
    assert weights == digest_path(c.model)
    local_s3.client.put_object(Bucket=local_s3.bucket, Key="runs/r/train/merged/config.json", Body=b'{"x": 1}')
    assert digest_path(c.model) != weights  # new content at the same key is seen
    body = pq.read_table(io.BytesIO(local_s3.read("runs/r/curate/curated.parquet")))
    assert body.num_rows == len(ROWS)

    # nothing was written locally under an s3: name
    assert not list(Path(tmp_path).glob("**/s3:*"))
    assert not Path("s3:").exists()
