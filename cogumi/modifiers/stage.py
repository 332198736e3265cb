"""The ``modifiers`` stage: mine failures, cluster them, run the teacher cascade, train and validate adapters.

Layout of ``<run>/modifiers/``::

    manifest.json          config hash, inputs, metrics, method, degradations
    mined.parquet          every task with the base answer and its verdict (split: mine / holdout)
    failures.jsonl         the failures of the mining split with their cluster
    clusters.json/.md      cluster sizes and examples
    cascade.jsonl/.json    the kept teacher answers (tier, verified) and per-tier share and cost
    adapters/<domain>/     PEFT adapter + adapter.gguf (GGUF LoRA) of each promoted adapter: what serving reads
    rejected/<domain>/     adapters their gate rejected (worse than the base on held-out items; not served)
    validation.json        base vs adapter on held-out tasks per domain (accuracy, win rate, delta)
    routing.parquet        the router's training set (contract: cogumi/route/data.py)
    report.md              all of the above in one page
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pyarrow.fs as pafs

from cogumi.artifacts import RunDir, StageRecorder, digest_path
from cogumi.config import CogumiConfig, ModelConfig
from cogumi.endpoints.cache import ResponseCache
from cogumi.endpoints.batch import BatchLedger, BatchRequest, billing_of, run_batch_requests
from cogumi.endpoints.metered import BatchBilling, MeteredEndpoint
from cogumi.endpoints.limiter import LocalLimiter
from cogumi.errors import CogumiError
from cogumi.modifiers.cascade import Cascade, Tier
from cogumi.modifiers.config import TierSettings
from cogumi.modifiers.clustering import cluster_failures, clusters_markdown
from cogumi.modifiers.mining import judge_endpoint, mine
from cogumi.modifiers.report import render_report, validation_summary
from cogumi.modifiers.tasks import PACKAGED_TASKS, check_task, load_tasks, split_domain
from cogumi.modifiers.verify import verify
from cogumi.raycluster import connect

log = logging.getLogger(__name__)
ADAPTERS = "adapters"  # output: adapters/<domain>/ of every promoted adapter (what serving reads)
STAGE = "modifiers"


def stage_key(cfg: CogumiConfig) -> tuple[str, dict[str, str]]:
    """(config hash, input digests) of the stage."""
    tasks = str(PACKAGED_TASKS) if cfg.modifiers.tasks == "embedded" else cfg.modifiers.tasks
    return cfg.section_hash("modifiers", "student", "judge", "train"), {"tasks": digest_path(tasks)}


def modifiers_stage(cfg: CogumiConfig, force: bool = False) -> dict[str, Any]:
    """Run (or skip, when its manifest matches) the modifiers stage on the current Ray (local when none).

    Returns:
        ``{"skipped", "stage", "metrics"}``.
    """
    from cogumi.evaluate.sandbox import configure as configure_sandbox

    configure_sandbox(cfg.evaluate.sandbox)  # evaluate.sandbox.require etc. for every program run here

    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(STAGE)
    cfg_hash, inputs = stage_key(cfg)
    if not force and stage.can_skip(cfg_hash, inputs):
        return {"skipped": True, "stage": stage.path, "metrics": stage.finished_manifest().metrics}
    connect()
    with stage.begin(cfg_hash, inputs) as rec:
        metrics = run_modifiers_stage(cfg, rec, run)
    return {"skipped": False, "stage": stage.path, "metrics": metrics}


def build_cascade(cfg: CogumiConfig, judge: MeteredEndpoint | None, cache_uri: str | None,
                  ledger_uri: str | None = None, fs: Any = None) -> Cascade:
    """The teacher cascade of ``modifiers.cascade`` (each tier a metered endpoint).

    Tiers in ``mode: batch`` run through their provider's batch API with the ledger at
    ``ledger_uri`` (on ``fs``), so a killed or rerun stage collects the same batches.
    """
    mc = cfg.modifiers
    limiter = LocalLimiter()
    cache = ResponseCache(cache_uri) if cache_uri else None
    tiers = []
    for t in mc.cascade.tiers:
        limiter.configure(t.name, t.rpm, t.tpm)
        ep = MeteredEndpoint(t.name, t.model, t.price_in_per_mtok, t.price_out_per_mtok, mc.cascade.retry,
                             limiter, cache)
        prefetch = None
        if t.mode == "batch":
            if cache_uri is None or ledger_uri is None:
                raise CogumiError(f"cascade tier {t.name} is in batch mode but the stage has no response cache or "
                                  "batch ledger", "modifiers.cascade", "set modifiers.cascade.use_cache=true")
            prefetch = _batch_prefetch(t, ledger_uri, cache_uri, fs)
        tiers.append(Tier(ep, t.max_tokens or mc.max_tokens, prefetch))
    kinds = {d: s.verify for d, s in mc.domains.items()}

    def check(task: dict[str, Any], answer: str):
        return verify(kinds[task["domain"]], task, answer, judge, mc.min_judge_score, mc.mining.code_timeout_s)

    return Cascade(tiers, check, mc.cascade.accept_unverified_last, mc.cascade.concurrency)


def _batch_prefetch(t: TierSettings, ledger_uri: str, cache_uri: str,
                    fs: Any) -> Callable[[list[BatchRequest]], BatchBilling | None]:
    def prefetch(requests: list[BatchRequest]) -> BatchBilling | None:
        billing = run_batch_requests(requests, ledger_uri, cache_uri,
                                     {t.name: (t.model, t.batch, t.price_in_per_mtok, t.price_out_per_mtok)}, fs)
        return billing_of(billing[t.name])

    return prefetch


def run_modifiers_stage(cfg: CogumiConfig, rec: StageRecorder, run: RunDir) -> dict[str, Any]:
    """Build the domain modifiers into the stage folder (see the module doc for the layout).

    Args:
        cfg: the whole config (``modifiers``, ``student``, ``judge``, ``train``).
        rec: the stage recorder.
        run: the run directory (for the response cache and Ray storage).

    Returns:
        The stage metrics.

    Raises:
        CogumiError: bad tasks, every teacher tier down, adapter training failure.
    """
    from cogumi.models.loading import hf_checkpoint

    mc = cfg.modifiers
    degraded: list[str] = []
    kinds = {d: s.verify for d, s in mc.domains.items()}
    base = mc.base or cfg.student
    judge_model = (mc.judge or cfg.judge) if "judge" in kinds.values() else None
    tasks = load_tasks(mc.tasks)
    splits = {}
    for d in mc.domains:
        mine_t, hold_t = split_domain(tasks, d, mc.tasks_per_domain, mc.holdout_fraction, mc.seed)
        for t in mine_t + hold_t:
            check_task(t, kinds[d])
        splits[d] = ({t["id"] for t in mine_t}, {t["id"] for t in hold_t})
    all_tasks = [t for t in tasks if any(t["id"] in a | b for a, b in splits.values())]

    # 1. failure mining (base model, Ray Data)
    mined = mine(all_tasks, base, judge_model, kinds, mc.max_tokens, mc.min_judge_score, use_ray=mc.mining.use_ray,
                 batch_size=mc.mining.batch_size, num_cpus=mc.mining.num_cpus, workers=mc.mining.workers,
                 timeout_s=mc.mining.code_timeout_s)
    for r in mined:
        r["split"] = "holdout" if r["id"] in splits[r["domain"]][1] else "mine"
    _write_parquet(rec, "mined.parquet", mined)
    failures = [r for r in mined if r["split"] == "mine" and not r["passed"]]
    per_domain_fail = {d: sum(f["domain"] == d for f in failures) for d in mc.domains}
    for d, n in per_domain_fail.items():
        if n == 0:
            degraded.append(f"{d}: the base passed every mining task — no failures, no adapter trained")

    # 2. clustering (offline embedder + KMeans)
    from cogumi.route.embedding import EmbeddingModelError, embedding_model_version

    try:
        clustering = cluster_failures(failures, mc.clusters, mc.embedding, mc.examples_per_cluster, mc.seed)
        cluster_method = f"kmeans k={clustering.k_used} over {embedding_model_version(mc.embedding.model)}"
        if clustering.note:
            degraded.append(f"clustering: {clustering.note}")
    except EmbeddingModelError as exc:
        from cogumi.modifiers.clustering import Clustering

        clustering = Clustering([-1] * len(failures), mc.clusters, 0, [], f"skipped: {exc.what}")
        cluster_method = f"skipped ({exc.what})"
        degraded.append(f"clustering skipped: {exc}")
        log.warning("modifiers: %s", exc)
    for f, lab in zip(failures, clustering.labels):
        f["cluster"] = lab
    rec.write_text("failures.jsonl", "".join(json.dumps(f) + "\n" for f in failures))
    rec.write_json("clusters.json", {"k_requested": clustering.k_requested, "k_used": clustering.k_used,
                                     "note": clustering.note, "clusters": clustering.clusters})
    rec.write_text("clusters.md", clusters_markdown(clustering))

    # 3. teacher cascade over the failures
    judge_ep = judge_endpoint(judge_model) if judge_model is not None else None
    cache_uri = mc.cascade.cache or posixpath.join(cfg.run.root.rstrip("/"), "cache", "responses")
    batch_tiers = any(t.mode == "batch" for t in mc.cascade.tiers)
    cascade = build_cascade(cfg, judge_ep, cache_uri if mc.cascade.use_cache else None,
                            rec.path("batches") if batch_tiers else None, rec.fs)
    answers = cascade.run(failures) if failures else []
    cascade_report = cascade.report(answers)
    if batch_tiers:
        rec.method["batch_ledger"] = BatchLedger(rec.path("batches"), rec.fs).finish()
    rec.write_text("cascade.jsonl", "".join(json.dumps(a) + "\n" for a in answers))
    rec.write_json("cascade.json", cascade_report)
    for name, why in cascade_report["down"].items():
        degraded.append(f"cascade tier {name} down: {why}")
    if failures and cascade_report["kept"] == 0 and len(cascade_report["down"]) == len(mc.cascade.tiers):
        raise CogumiError("every teacher tier of the cascade is down: " + "; ".join(
            f"{k}: {v}" for k, v in cascade_report["down"].items()), "modifiers.cascade.tiers",
            "check the endpoints (base_url, API keys) and re-run; mining and clusters are kept in "
            f"{rec.stage.path}")

    # 4. adapters per domain (Ray Train) + GGUF export + validation against the base
    model_location: str | None = None
    adapters: dict[str, dict[str, Any]] = {}
    validation: dict[str, Any] = {}
    routing: list[dict[str, Any]] = []
    for d, ds in mc.domains.items():
        examples = [{"instruction": a["prompt"], "response": a["response"]} for a in answers
                    if a["domain"] == d and a["response"]]
        if per_domain_fail[d] and len(examples) < mc.adapter.min_examples:
            degraded.append(f"{d}: {len(examples)} cascade answer(s) < modifiers.adapter.min_examples="
                            f"{mc.adapter.min_examples} — no adapter trained")
        if not per_domain_fail[d] or len(examples) < mc.adapter.min_examples:
            continue
        unverified = sum(not a["verified"] for a in answers if a["domain"] == d and a["response"])
        if unverified:
            degraded.append(f"{d}: the adapter trains on {unverified} of {len(examples)} teacher answer(s) that "
                            "no tier could verify (kept from the last tier, accept_unverified_last)")
        model_location = model_location or hf_checkpoint(base)
        adapters[d] = _train_export(cfg, rec, run, d, ds, examples, model_location, degraded)
        domain_rows = [r for r in mined if r["domain"] == d]
        mod_model = _with_adapter(base, adapters[d])
        mod = mine([_task(r) for r in domain_rows], mod_model, judge_model, kinds, mc.max_tokens,
                   mc.min_judge_score, use_ray=mc.mining.use_ray, batch_size=mc.mining.batch_size,
                   num_cpus=mc.mining.num_cpus, workers=mc.mining.workers, timeout_s=mc.mining.code_timeout_s)
        validation[d] = validation_summary(domain_rows, mod, ds.verify)
        if not _promote_adapter(mc, rec, d, ds.verify, base, adapters[d], validation[d], degraded):
            continue
        for b, m in zip(domain_rows, mod):
            routing.append({"prompt": b["prompt"], "domain": d, "label": int((m["score"] or 0) > (b["score"] or 0)),
                            "base_answer": b["response"], "base_score": float(b["score"] or 0.0),
                            "modifier_score": float(m["score"] or 0.0), "split": b["split"], "id": b["id"]})
    rec.write_json("validation.json", validation)
    if routing:
        _write_parquet(rec, "routing.parquet", routing)
        if len({r["label"] for r in routing}) < 2:
            degraded.append(f"routing.parquet: every label is {routing[0]['label']} (the adapters never beat / "
                            "always beat the base); `cogumi router` needs both labels")
    else:
        degraded.append("no adapter was trained, so no routing.parquet was written (the router falls back to "
                        "its local proxy set)")

    metrics = {"tasks": len(mined), "failures": len(failures), "failures_per_domain": per_domain_fail,
               "clusters": clustering.k_used, "cluster_sizes": [c["size"] for c in clustering.clusters],
               "cascade_shares": {t["name"]: t["share"] for t in cascade_report["tiers"]},
               "cascade_cost_usd": cascade_report["teacher_cost_usd"],
               "cascade_unverified_kept": cascade_report["unverified_kept"],
               "adapters": sorted(d for d, a in adapters.items() if a.get("promoted", True)),
               "rejected_adapters": {d: a["gate"] for d, a in adapters.items() if not a.get("promoted", True)},
               "routing_rows": len(routing),
               "validation_delta": {d: v["holdout"]["delta"] for d, v in validation.items()},
               "degraded": degraded}
    method = {"mining": ("ray data map_batches (actor)" if mc.mining.use_ray else "in-process")
              + f", base {base.backend}:{base.model}",
              "verification": ", ".join(f"{d}: {k}" for d, k in kinds.items()),
              "clustering": cluster_method,
              "cascade": " -> ".join(f"{t.name} ({t.model.backend}:{t.model.base_url or t.model.model})"
                                     for t in mc.cascade.tiers),
              "adapters": "trl.SFTTrainer on ray.train.torch.TorchTrainer (cogumi.train), "
                          + ", ".join(f"{d} r={a['rank']}" for d, a in adapters.items())}
    rec.metrics.update(metrics)
    rec.method.update(method)
    rec.write_text("report.md", render_report(metrics, method, cascade_report, clustering, validation))
    for msg in degraded:
        log.warning("modifiers degraded: %s", msg)
    return metrics


def _promote_adapter(mc: Any, rec: StageRecorder, domain: str, kind: str, base: ModelConfig,
                     adapter: dict[str, Any], validation: dict[str, Any], degraded: list[str]) -> bool:
    """Gate one adapter; a rejected one moves to ``rejected/<domain>/`` (not served, no routing rows)."""
    from cogumi.modifiers.gate import gate_adapter

    if not mc.adapter.gate:
        adapter.update(promoted=True, gate="off (modifiers.adapter.gate=false)")
        return True
    local = adapter["gguf_local"] if base.backend == "llamacpp" else adapter["peft_local"]
    promoted, why, results = gate_adapter(kind, base, local, validation["holdout"], mc.adapter.gate_items)
    adapter.update(promoted=promoted, gate=why, gate_results=results)
    validation["gate"] = {"promoted": promoted, "why": why, "likelihood": results}
    if not promoted:
        rec.fs.create_dir(rec.path("rejected"), recursive=True)
        rec.fs.move(rec.path(f"{ADAPTERS}/{domain}"), rec.path(f"rejected/{domain}"))
        adapter["path"] = rec.path(f"rejected/{domain}")
        degraded.append(f"{domain}: adapter rejected by its gate ({why}); not served")
    return promoted


def _task(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("id", "domain", "prompt", "tests", "answer") if k in r}


def _with_adapter(base: ModelConfig, adapter: dict[str, Any]) -> ModelConfig:
    """The base with the domain adapter: the GGUF LoRA for llama.cpp, the PEFT folder for transformers."""
    if base.backend == "llamacpp":
        if not adapter.get("gguf_local"):
            raise CogumiError("the llama.cpp base needs the GGUF LoRA to validate the adapter",
                              "modifiers.adapter.export_gguf", "set modifiers.adapter.export_gguf=true")
        return base.model_copy(update={"adapter": adapter["gguf_local"]})
    if base.backend == "transformers":
        return base.model_copy(update={"adapter": adapter["peft_local"]})
    raise CogumiError("an adapter cannot be applied to an OpenAI endpoint base", "modifiers.base",
                      "use a llamacpp or transformers base model for the modifiers stage")


def _train_export(cfg: CogumiConfig, rec: StageRecorder, run: RunDir, domain: str, ds: Any,
                  examples: list[dict[str, str]], model_location: str, degraded: list[str]) -> dict[str, Any]:
    from cogumi.modifiers.adapters import domain_train_config, export_gguf, train_adapter

    mc = cfg.modifiers
    tc = domain_train_config(cfg.train, ds.rank, ds.alpha, mc.adapter.max_steps)
    key = hashlib.sha256(json.dumps({"train": tc.model_dump(mode="json"), "ex": examples},
                                    sort_keys=True).encode()).hexdigest()[:10]
    local = Path(tempfile.mkdtemp(prefix=f"cogumi-mod-{domain}-"))
    peft_dir = local / "peft"
    summary = train_adapter(tc, model_location, examples, str(peft_dir), rec.stage.file(f"ray/{domain}"),
                            run.fs, f"{domain}-{key}", seed=mc.seed)
    if not (peft_dir / "adapter_model.safetensors").is_file():
        raise CogumiError(f"the {domain} adapter has no weights", f"modifiers adapter {domain}",
                          "check the training logs under the stage's ray/ folder")
    out: dict[str, Any] = {"rank": tc.lora.r, "alpha": tc.lora.alpha, "examples": len(examples),
                           "steps": summary.get("global_step"), "peft_local": str(peft_dir),
                           "path": rec.stage.file(f"{ADAPTERS}/{domain}")}
    if mc.adapter.export_gguf:
        out["gguf"] = export_gguf(str(peft_dir), model_location, str(peft_dir / "adapter.gguf"))
        out["gguf_local"] = str(peft_dir / "adapter.gguf")
    else:
        degraded.append(f"{domain}: GGUF LoRA export off (modifiers.adapter.export_gguf=false)")
    run.fs.create_dir(rec.path(f"{ADAPTERS}/{domain}"), recursive=True)
    pafs.copy_files(str(peft_dir), rec.path(f"{ADAPTERS}/{domain}"), source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=run.fs)
    return out


def _write_parquet(rec: StageRecorder, rel: str, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with rec.fs.open_output_stream(rec.path(rel)) as f:
        pq.write_table(pa.Table.from_pylist(rows), f)
