"""The ``router`` stage: find the routing set, extract features on Ray, fit, write the artifact.

The artifact is the stage folder ``<run>/router/``: ``router.json`` + ``weights.safetensors``
(what :func:`cogumi.route.loader.load_router` reads), ``metrics.json``, ``report.md``,
``reliability_{cascade,pre}.png``, ``sweep.{png,md,json}``, ``routing_features.parquet``
and the stage ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from cogumi.artifacts import MANIFEST, RunDir, StageRecorder, digest_path, package_versions
from cogumi.config import CogumiConfig, ModelConfig
from cogumi.errors import CogumiError
from cogumi.route.data import (
    MODIFIERS_OUTPUT,
    UntrainableRoutingSet,
    has_features,
    read_routing_set,
    require_trainable,
    validate_rows,
)
from cogumi.route.embedding import embedding_model_path, embedding_model_version
from cogumi.route.escalation import PACKAGED_ESCALATION_SET, load_escalation_set, train_escalation
from cogumi.route.extract import extract
from cogumi.route.proxy import PROXY_DESCRIPTION, label_proxy_rows, proxy_tasks
from cogumi.route.train import fit_router

log = logging.getLogger(__name__)
STAGE = "router"


@dataclass
class RoutingSource:
    """Where the routing rows come from: ``file``, ``modifiers`` or ``local-proxy``."""

    kind: str
    uri: str | None
    description: str


def base_model(cfg: CogumiConfig) -> ModelConfig:
    """The model whose answers give the confidence features: ``router.data.base`` or the served base."""
    return cfg.router.data.base or cfg.serve.base


def resolve_source(cfg: CogumiConfig, run: RunDir) -> RoutingSource:
    """Pick the routing set according to ``router.data.source`` (see :class:`RoutingDataSettings`).

    Raises:
        CogumiError: ``file`` without a path, or ``modifiers`` before the modifiers stage wrote its set.
    """
    data = cfg.router.data
    produced = run.stage("modifiers").file(MODIFIERS_OUTPUT)
    produced_exists = run.fs.get_file_info(produced).type == pafs.FileType.File
    if data.source == "file" or (data.source == "auto" and data.file):
        if not data.file:
            raise CogumiError("router.data.source is 'file' but router.data.file is empty", "router.data.file",
                              "set router.data.file=path/to/routing.parquet")
        return RoutingSource("file", data.file, f"file: {data.file}")
    if data.source == "modifiers" or (data.source == "auto" and produced_exists):
        if not produced_exists:
            raise CogumiError(f"the modifiers stage has not written {MODIFIERS_OUTPUT}", produced,
                              "run `cogumi modifiers` first, or set router.data.source=local-proxy")
        if data.source == "auto":
            try:
                require_trainable([r["label"] for r in read_routing_set(produced)], produced)
            except UntrainableRoutingSet as exc:  # a malformed set is still an error, not a fallback
                log.warning("router: the modifiers' routing set cannot train a router (%s); "
                            "falling back to the LOCAL PROXY set", exc.what)
                return RoutingSource("local-proxy", None,
                                     f"{PROXY_DESCRIPTION} (fallback: the modifiers' set {exc.what})")
        return RoutingSource("modifiers", produced, f"modifiers stage: {produced}")
    if data.source == "auto":
        log.warning("router: no routing set from the modifiers stage and no router.data.file; "
                    "building the LOCAL PROXY set (labels = base answer wrong, no modifier ran)")
    return RoutingSource("local-proxy", None, PROXY_DESCRIPTION)


def stage_key(cfg: CogumiConfig, source: RoutingSource) -> tuple[str, dict[str, str]]:
    """(config hash, input digests) of the stage."""
    esc = cfg.router.escalation.data or str(PACKAGED_ESCALATION_SET)
    inputs = {"escalation_set": digest_path(esc)}
    if source.uri:
        inputs["routing_set"] = digest_path(source.uri)
    payload = {"router": cfg.router.model_dump(mode="json"), "base": base_model(cfg).model_dump(mode="json"),
               "source": source.kind, "embedding": embedding_model_version(cfg.router.embedding.model)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest(), inputs


def router_stage(cfg: CogumiConfig, force: bool = False, record_untrainable: bool = False) -> dict[str, Any]:
    """Run (or skip, when its manifest matches) the router stage.

    Args:
        record_untrainable: when the routing set cannot train a router (one label, too few
            rows), finish the stage without a router instead of failing: the manifest records
            the reason (metrics ``router_trained: false``, ``degraded``), no router files are
            left in the folder, and an unchanged rerun skips it. The pipeline asks for this;
            ``cogumi router`` reports the set as an error.

    Returns:
        ``{"skipped", "stage", "source", "metrics"}`` (metrics as in ``metrics.json``), plus
        ``"degraded"`` (why no router was trained) when the stage finished without one.

    Raises:
        UntrainableRoutingSet: the set cannot train a router and ``record_untrainable`` is False.
    """
    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(STAGE)
    source = resolve_source(cfg, run)
    cfg_hash, inputs = stage_key(cfg, source)
    if not force and stage.can_skip(cfg_hash, inputs):
        metrics = stage.finished_manifest().metrics
        if metrics.get("router_trained", True):
            with run.fs.open_input_stream(stage.file("metrics.json")) as f:
                metrics = json.loads(f.read().decode())
            return {"skipped": True, "stage": stage.path, "source": source, "metrics": metrics}
        if record_untrainable:
            return {"skipped": True, "stage": stage.path, "source": source, "metrics": metrics,
                    "degraded": metrics["degraded"]}
    with stage.begin(cfg_hash, inputs) as rec:
        try:
            metrics = run_router_stage(cfg, rec, source)
        except UntrainableRoutingSet as exc:
            if not record_untrainable:
                raise
            metrics = record_no_router(rec, exc)
            return {"skipped": False, "stage": stage.path, "source": source, "metrics": metrics,
                    "degraded": metrics["degraded"]}
    return {"skipped": False, "stage": stage.path, "source": source, "metrics": metrics}


def record_no_router(rec: StageRecorder, exc: UntrainableRoutingSet) -> dict[str, Any]:
    """Finish the stage without a router: clear the folder of an earlier router, say why in metrics and report."""
    for item in rec.fs.get_file_info(pafs.FileSelector(rec.stage.path)):
        if item.base_name == MANIFEST:
            continue
        if item.type == pafs.FileType.Directory:
            rec.fs.delete_dir(item.path)
        else:
            rec.fs.delete_file(item.path)
    metrics = {"router_trained": False, "status": "degraded",
               "degraded": f"no router trained ({exc.what}); serving the built-in router"}
    rec.metrics.update(metrics)
    rec.method["router"] = "none: the routing set cannot train one; serving uses the built-in cascade router"
    rec.write_json("metrics.json", metrics)
    rec.write_text("report.md", f"# Router report\n\nNo router trained: {exc.what}.\n\nServing uses the built-in "
                                f"cascade router. Fix: {exc.fix}.\n")
    return metrics


def run_router_stage(cfg: CogumiConfig, rec: StageRecorder, source: RoutingSource) -> dict[str, Any]:
    """Build the router artifact into the stage folder.

    Args:
        cfg: the whole config (``router`` section, and ``serve.base`` as the default base model).
        rec: the stage recorder (files, metrics and method go through it).
        source: from :func:`resolve_source`.

    Returns:
        The metrics (also written to ``metrics.json`` and the manifest).
    """
    rc = cfg.router
    embedding_model_path(rc.embedding.model)  # fail early and clearly when the embedder is missing
    if source.kind == "local-proxy":
        rows = proxy_tasks(rc.data.proxy_prompts, list(rc.data.proxy_domains), rc.seed)
    else:
        rows = read_routing_set(source.uri or "")
        require_trainable([r["label"] for r in rows], source.description)
    need_base = source.kind == "local-proxy" or not has_features(rows)
    base = base_model(cfg) if need_base else None
    esc_rows = load_escalation_set(rc.escalation.data)
    texts = [r["prompt"] for r in rows] + [r["text"] for r in esc_rows]
    log.info("router: %d routing rows (%s), %d escalation rows; base answers: %s", len(rows), source.kind,
             len(esc_rows), "generated" if need_base else "given")
    rows, emb = extract(rows, texts, base, rc.embedding, rc.extract, rc.data.max_tokens, rc.data.top_logprobs)
    if source.kind == "local-proxy":
        rows = label_proxy_rows(rows)
        require_trainable([r["label"] for r in rows], source.description)
    rows = validate_rows(rows, source.description)
    q_emb, e_emb = emb[:len(rows)], emb[len(rows):]
    esc = train_escalation(esc_rows, e_emb, rc.escalation.c, rc.escalation.threshold, rc.seed)
    fit = fit_router(rows, q_emb, esc, rc)

    emb_dim = int(q_emb.shape[1])
    method = {"routing_data": source.description,
              "confidence_features": (f"generated: {base.backend}:{base.model}, greedy, {rc.data.max_tokens} tokens, "
                                      f"top-{max(1, rc.data.top_logprobs)} logprobs") if base
                                     else "given in the routing set",
              "feature_extraction": "ray data (actor per UDF)" if rc.extract.use_ray else "in-process",
              "embedding": f"{embedding_model_version(rc.embedding.model)} ({emb_dim} dims)",
              "projection": f"pca {fit.metrics['projection']['components_fitted']} of "
                            f"{fit.metrics['projection']['width']} columns (rest zero)",
              "router": f"mlp {rc.mlp.input_dim}->{'->'.join(map(str, rc.mlp.hidden))}->1, bce, "
                        f"split {'/'.join(str(s) for s in rc.mlp.split)}",
              "calibration": f"cascade {fit.metrics['cascade']['calibration']}, pre {fit.metrics['pre']['calibration']}"
                             f" (requested {rc.calibration.method}, fitted on validation)",
              "domain_classifier": "logistic regression over query embeddings"
                                   if len(fit.model.domains.classes) > 1 else "single domain (constant)",
              "escalation": "logistic regression over follow-up embeddings, "
                            + ("packaged set" if not rc.escalation.data else rc.escalation.data)}
    fit.model.info.update({"embedding": {"model": rc.embedding.model, "version": embedding_model_version(
        rc.embedding.model), "dim": emb_dim}, "top_logprobs": max(1, rc.data.top_logprobs),
        "base_model": base_model(cfg).model_dump(mode="json"), "data": {"kind": source.kind,
                                                                        "description": source.description},
        "method": method, "versions": package_versions(), "metrics": _headline(fit.metrics)})
    fit.model.save(rec.write_text, lambda rel, data: _write_bytes(rec, rel, data))
    for rel, content in fit.files.items():
        if isinstance(content, bytes):
            _write_bytes(rec, rel, content)
        else:
            rec.write_text(rel, content)
    rec.write_json("metrics.json", fit.metrics)
    rec.write_text("report.md", report(fit.metrics, method))
    _write_features(rec, rows, emb_dim)
    rec.metrics.update({"router_trained": True, **_headline(fit.metrics)})
    rec.method.update(method)
    return fit.metrics


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    """The numbers the manifest and router.json keep."""
    return {"rows": m["rows"]["total"], "test_rows": m["rows"]["test"],
            "router_test_accuracy": m["cascade"]["test_accuracy"], "router_test_ece": m["cascade"]["test_ece"],
            "router_test_ece_raw": m["cascade"]["test_ece_raw"],
            "pre_route_test_accuracy": m["pre"]["test_accuracy"],
            "domain_test_accuracy": m["domain_classifier"]["test_accuracy"],
            "escalation_test_accuracy": m["escalation"]["test"]["accuracy"],
            "operating_threshold": m["thresholds"]["operating"],
            "recommended_threshold": m["thresholds"]["recommended"],
            "target_accuracy_met": m["targets"]["router_accuracy"]["met"], "target_ece_met": m["targets"]["ece"]["met"]}


def report(m: dict[str, Any], method: dict[str, str]) -> str:
    """A short Markdown report of what was measured (no number here is not in metrics.json)."""
    t = m["targets"]
    lines = ["# Router report", "", f"Data: {method['routing_data']}", "",
             f"Rows: {m['rows']['total']} (train {m['rows']['train']}, val {m['rows']['val']}, "
             f"test {m['rows']['test']}); share labelled 'modifier better': {m['rows']['label_1_share']:.1%}", "",
             "| router | test accuracy | ECE raw | ECE temperature | ECE platt | ECE used | calibration |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for mode in ("cascade", "pre"):
        r = m[mode]
        lines.append(f"| {mode} | {r['test_accuracy']:.1%} | {r['test_ece_raw']:.3f} | {r['test_ece_temperature']:.3f}"
                     f" | {r['test_ece_platt']:.3f} | {r['test_ece']:.3f} | {r['calibration']} |")
    lines += ["", f"Spec targets on the test split ({t['rows']} rows): router accuracy {t['router_accuracy']['target']}"
              f" -> {t['router_accuracy']['measured']:.1%} ({'met' if t['router_accuracy']['met'] else 'NOT met'}); "
              f"ECE {t['ece']['target']} -> {t['ece']['measured']:.3f} ({'met' if t['ece']['met'] else 'NOT met'}).",
              "", f"Domain classifier test accuracy: {m['domain_classifier']['test_accuracy']:.1%} "
              f"({', '.join(m['domain_classifier']['classes'])}).",
              f"Escalation detector held-out accuracy: {m['escalation']['test']['accuracy']:.1%} "
              f"({m['escalation']['test']['rows']} rows; precision {m['escalation']['test']['precision']:.1%}, "
              f"recall {m['escalation']['test']['recall']:.1%}).",
              f"Thresholds: operating {m['thresholds']['operating']}, recommended {m['thresholds']['recommended']} "
              "(see sweep.md / sweep.png).", "", "## Method", ""]
    lines += [f"- {k}: {v}" for k, v in method.items()]
    return "\n".join(lines) + "\n"


def _write_bytes(rec: StageRecorder, rel: str, data: bytes) -> None:
    with rec.fs.open_output_stream(rec.path(rel)) as f:
        f.write(data)


def _write_features(rec: StageRecorder, rows: list[dict[str, Any]], emb_dim: int) -> None:
    """The featurised routing set (no embeddings), for inspection and reuse as a routing file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keep = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict, np.ndarray))]
    table = pa.Table.from_pylist([{k: r.get(k) for k in keep} for r in rows])
    with rec.fs.open_output_stream(rec.path("routing_features.parquet")) as f:
        pq.write_table(table.replace_schema_metadata({"embedding_dim": str(emb_dim)}), f)
