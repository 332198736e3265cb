"""Phase 2 on Ray: each compression step is a Ray task that writes one stage with a manifest.

Stages are ``compress.baseline``, ``compress.prune``, ``compress.quantize``,
``compress.gguf``, ``compress.zstd`` and ``compress.report`` in the run directory.
One stage per step (not one ``compress`` stage with sub-steps) because each step
is expensive on a real model and has its own inputs: a manifest per step lets a
changed GGUF or zstd setting rerun only those steps, a failed step leave the
earlier ones finished, and the manifest say which method that step really ran.
Each step's config hash covers only the settings it reads (plus the quality
gate's), and its inputs are the digests of the stages it reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from cogumi.artifacts import STAGE_PREFIX, RunDir, digest_path
from cogumi.compress import steps
from cogumi.compress.errors import CompressError
from cogumi.compress.report import bar_chart, size_rows, to_markdown
from cogumi.config import CogumiConfig
from cogumi.errors import ArtifactError, CogumiError
from cogumi.raycluster import connect

log = logging.getLogger(__name__)

# settings each step depends on (besides its inputs); quality is in all of them (every step is gated)
STEP_SETTINGS = {
    "baseline": ("quality",),
    "prune": ("calibration", "prune", "quality"),
    "quantize": ("calibration", "quantize", "quality", "prune"),
    "gguf": ("gguf", "quality"),
    "zstd": ("zstd",),
    "report": ("quality",),
}


def resolve_refs(cfg: CogumiConfig, run: RunDir) -> CogumiConfig:
    """A copy of ``cfg`` whose ``stage:<stage>/<path>`` references name their files in ``run``.

    Applies to ``compress.model``, ``calibration.data``, ``quality.eval_data`` and ``gguf.adapters``
    (e.g. ``stage:train/merged``, ``stage:curate/curated.parquet``); each becomes a location on the
    run's filesystem (a local path, or a URI such as ``s3://bucket/run/train/merged``).
    """
    def located(ref: str | None) -> str | None:
        if ref is None or not ref.startswith(STAGE_PREFIX):
            return ref  # a path, hub id or data-set name: used as written
        return run.resolve(ref, "compress config").uri()

    c = cfg.compress
    new = c.model_copy(update={
        "model": located(c.model),
        "calibration": c.calibration.model_copy(update={"data": located(c.calibration.data)}),
        "quality": c.quality.model_copy(update={"eval_data": located(c.quality.eval_data)}),
        "gguf": c.gguf.model_copy(update={"adapters": [located(a) for a in c.gguf.adapters]}),
    })
    return cfg.model_copy(update={"compress": new})


def resolve_model(cfg: CogumiConfig) -> Path:
    """The model to compress: ``compress.model``, else the student (the embedded GGUF is materialised)."""
    from cogumi.compress.checkpoint import check_hf_dir
    from cogumi.models.loading import hf_checkpoint

    location = cfg.compress.model or hf_checkpoint(cfg.student)
    return check_hf_dir(location, "input")


def input_gguf(cfg: CogumiConfig) -> Path | None:
    """The student's own GGUF file when it is the (unchanged) input, else None."""
    from cogumi.models.loading import resolve_source

    if cfg.compress.model is not None:
        return None
    src = resolve_source(cfg.student)
    return Path(src.location) if src.kind == "gguf" else None


def enabled_steps(cfg: CogumiConfig) -> list[str]:
    """Steps that run under this config, in order."""
    c = cfg.compress
    on = {"baseline": True, "prune": c.prune.enabled, "quantize": c.quantize.enabled, "gguf": c.gguf.enabled,
          "zstd": c.zstd.enabled and c.gguf.enabled, "report": True}
    return [s for s in steps.STEPS if on[s]]


def step_hash(cfg: CogumiConfig, step: str) -> str:
    """SHA-256 of the compress settings a step reads."""
    data = cfg.compress.model_dump(mode="json")
    picked = {k: data[k] for k in STEP_SETTINGS[step]}
    if step == "gguf":
        picked["source_quantize"] = data["quantize"] if cfg.compress.gguf.source == "quantized" else None
    return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()


def step_inputs(run: RunDir, cfg: CogumiConfig, step: str, model_digest: str) -> dict[str, str]:
    """Digests of what a step reads: the input model or earlier stages (and adapters for gguf)."""
    c = cfg.compress

    def stage(s: str) -> str:
        return run.stage(steps.stage_name(s)).digest()

    if step in ("baseline", "prune"):
        return {"model": model_digest}
    if step == "quantize":
        return {"prune": stage("prune")} if c.prune.enabled else {"model": model_digest}
    if step == "gguf":
        src = "quantize" if c.gguf.source == "quantized" else ("prune" if c.prune.enabled else None)
        inputs = {src: stage(src)} if src else {"model": model_digest}
        inputs.update({f"adapter:{Path(a).name}": digest_path(a) for a in c.gguf.adapters})
        return inputs
    if step == "zstd":
        return {"gguf": stage("gguf")}
    return {s: stage(s) for s in enabled_steps(cfg) if s != "report"}


def execute_step(step: str, cfg: CogumiConfig, model_dir: str, model_digest: str, force: bool = False,
                 run_root: str | None = None) -> dict[str, Any]:
    """Run one step (or skip it when its manifest matches) and return its manifest metrics.

    This is the body of each Ray task; it is a plain function and runs without Ray too.
    """
    run = RunDir.open(run_root or cfg.run.root, cfg.run.name)
    stage = run.stage(steps.stage_name(step))
    config_hash, inputs = step_hash(cfg, step), step_inputs(run, cfg, step, model_digest)
    if not force and stage.can_skip(config_hash, inputs):
        log.info("compress %s: unchanged, skipped (manifest %s)", step, stage.file("manifest.json"))
        return {"step": step, "skipped": True, **stage.finished_manifest().metrics}
    env = steps.StepEnv(cfg.compress, run, Path(model_dir), input_gguf=input_gguf(cfg))
    if step != "baseline":
        env.baseline_ppl = run.stage(steps.stage_name("baseline")).finished_manifest().metrics["ppl"]
    with stage.begin(config_hash, inputs) as rec:
        if step == "report":
            write_report(run, cfg, rec)
        else:
            getattr(steps, step)(env, rec)
    return {"step": step, "skipped": False, **rec.metrics}


def write_report(run: RunDir, cfg: CogumiConfig, rec: Any) -> None:
    """Size/quality table (JSON, Markdown, PNG) from the finished steps' manifests."""
    metrics = {s: run.stage(steps.stage_name(s)).finished_manifest().metrics for s in enabled_steps(cfg) if s != "report"}
    methods = {s: run.stage(steps.stage_name(s)).finished_manifest().method for s in metrics}
    rows = size_rows(metrics)
    served = metrics.get("gguf", {}).get("served")
    for row in rows:
        row["served"] = row["step"] == "gguf" and row["artifact"] == served
    notes = [steps.PRUNE_NOTE] if "prune" in metrics else []
    if "quantize" in metrics:
        notes.append(f"quantize: {methods['quantize'].get('quantization')}")
    if "gguf" in metrics:
        notes.append(f"gguf source: {methods['gguf'].get('source')}; K-quant tensors whose rows are not a multiple "
                     "of 256 use llama.cpp fallback types (see tensor_types in the gguf manifest)")
    title = f"Compression of {run.name}: size and held-out perplexity per step"
    summary = {"rows": rows, "methods": methods, "gate": {"max_ppl_increase": cfg.compress.quality.max_ppl_increase,
                                                          "on_fail": cfg.compress.quality.on_fail}}
    rec.write_json("size_table.json", summary)
    rec.write_text("size_table.md", to_markdown(rows, title, notes))
    bar_chart(rows, rec.path("size_chart.png"), title)
    rec.metrics.update(rows=rows, worst_gate=_worst([r.get("gate") for r in rows]), served=served,
                       rejected={r["artifact"]: r["rejected"] for r in rows if r.get("rejected")})
    if served:
        row = next(r for r in rows if r["served"])
        rec.metrics["headline"] = (f"serving {served}: {row['bytes'] / 1e6:.1f} MB, perplexity {row['ppl']:.2f} "
                                   f"({100 * row.get('ppl_change', 0):+.1f}% vs input)"
                                   + (f"; rejected {len(rec.metrics['rejected'])}" if rec.metrics["rejected"] else ""))
    rec.method["report"] = "size_table.json, size_table.md, size_chart.png"


def _worst(statuses: list[str | None]) -> str:
    for s in ("fail", "warn", "rejected", "pass"):
        if s in statuses:
            return s
    return "n/a"


def _check_local(cfg: CogumiConfig) -> str:
    """Absolute local run root (llmcompressor and llama.cpp write local files)."""
    from cogumi.artifacts import resolve_filesystem

    fs, path = resolve_filesystem(cfg.run.root)
    if not isinstance(fs, pafs.LocalFileSystem):
        raise ArtifactError(f"compress writes model files with llmcompressor and llama.cpp, which need a local "
                            f"path; run.root is {cfg.run.root}", "run.root",
                            "set run.root to a local or mounted folder and copy the results to the bucket after")
    return path


def run_compress(cfg: CogumiConfig, *, force: bool = False, use_ray: bool = True) -> dict[str, Any]:
    """Run every enabled step in order, each as a Ray task (or in-process with ``use_ray=False``).

    Args:
        cfg: the root config (``compress`` section plus ``run`` and ``student``).
        force: rerun steps whose manifests match.
        use_ray: dispatch steps as Ray tasks (joins RAY_ADDRESS or starts a local Ray).

    Returns:
        ``{"run": run path, "steps": {step: metrics}, "skipped": every step was reused,
        "report": Markdown path}`` (the shape :mod:`cogumi.pipeline.runner` expects).

    Raises:
        CogumiError: a step failed (bad input, quality gate, round trip); earlier steps stay finished.
    """
    root = _check_local(cfg)
    cfg = resolve_refs(cfg, RunDir.open(root, cfg.run.name))
    model_dir = resolve_model(cfg)
    model_digest = digest_path(str(model_dir))
    results: dict[str, Any] = {}
    for step in enabled_steps(cfg):
        args = (step, cfg, str(model_dir), model_digest, force, root)
        results[step] = _on_ray(cfg, step, args) if use_ray else execute_step(*args)
    run = RunDir.open(root, cfg.run.name)
    return {"run": run.path, "steps": results, "skipped": all(r.get("skipped") for r in results.values()),
            "report": run.stage(steps.stage_name("report")).file("size_table.md"),
            "headline": results.get("report", {}).get("headline", "")}


def _on_ray(cfg: CogumiConfig, step: str, args: tuple) -> dict[str, Any]:
    import ray

    connect(log_to_driver=False)
    gpus = 1 if step in ("prune", "quantize") and _wants_gpu(cfg) else 0
    task = ray.remote(num_cpus=cfg.compress.num_cpus, num_gpus=gpus, max_retries=0)(execute_step)
    try:
        return ray.get(task.remote(*args))
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, CogumiError):
            raise cause from None
        raise CompressError(f"compress step '{step}' crashed in its Ray task ({type(cause or exc).__name__}: "
                            f"{str(cause or exc).splitlines()[0][:300]})", steps.stage_name(step),
                            "see the Ray worker log; the stage manifest is marked failed") from None


def _wants_gpu(cfg: CogumiConfig) -> bool:
    import ray

    device = cfg.compress.quantize.device
    has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
    if device == "cuda" and not has_gpu:
        raise CompressError("compress.quantize.device is cuda but the Ray cluster has no GPU", "compress.quantize",
                            "set compress.quantize.device to auto or cpu, or add a GPU node")
    return device != "cpu" and has_gpu
