"""Phase 0 on Ray Data: read -> teachers -> rule filters -> judge -> dedup -> curated.parquet + report.

Each step is a pure class over rows (:mod:`teacher`, :mod:`filters`, :mod:`judge`,
:mod:`dedup`); this module only wires them into Ray Data operators (actor pools
with configurable size and CPUs) and streams the results into the stage folder:

- ``curated.parquet`` (+ ``curated.jsonl``): the kept rows, :data:`cogumi.schema.CURATED_SCHEMA`;
- ``rows.parquet``: every input row with its fate (ok / error + error / filtered + reason);
- ``stats.json``, ``report.md``, ``report.png``: counts, quality, duplicates, cost per teacher.
"""

from __future__ import annotations

import json
import logging
import posixpath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cogumi.config import CogumiConfig
from cogumi.config_base import ModelConfig
from cogumi.endpoints.batch import BatchLedger
from cogumi.endpoints.cache import ResponseCache
from cogumi.endpoints.metered import MeteredEndpoint
from cogumi.curate.batching import PlanJudgeRequests, PlanTeacherRequests, billing_of, run_batches
from cogumi.curate.config import CurateConfig
from cogumi.curate.dedup.distributed import dedup_dataset, removal_lookup
from cogumi.curate.dedup.minhash import lsh_params
from cogumi.curate.filters import FilterStep, token_counter
from cogumi.curate.judge import QualityJudgeStep
from cogumi.endpoints.limiter import RemoteLimiter, get_limiter
from cogumi.curate.ray_session import init_ray
from cogumi.curate.reader import check_unique_ids, read_prompts
from cogumi.curate.report import CurationStats, render_markdown, render_plot
from cogumi.curate.rows import FILTERED, OK, ROW_SCHEMA, from_table, mark, to_table
from cogumi.curate.teacher import TeacherStep
from cogumi.schema import CURATED_SCHEMA, normalise_record

log = logging.getLogger(__name__)
ACCOUNTING_COLUMNS = [c for c in ROW_SCHEMA.names if c not in ("instruction", "response")]


class TeacherUDF:
    """Ray Data actor: :class:`TeacherStep` over Arrow batches."""

    def __init__(self, curate_json: str, limiter, cache_uri: str, billing: dict[str, Any] | None = None):
        cfg = CurateConfig.model_validate_json(curate_json)
        lim, cache, billing = RemoteLimiter(limiter, cfg.rate_limits()), ResponseCache(cache_uri), billing or {}
        endpoints = {t.name: MeteredEndpoint(t.name, t.model, t.price_in_per_mtok, t.price_out_per_mtok,
                                             cfg.retry, lim, cache, billing_of(billing.get(t.name)))
                     for t in cfg.teachers}
        self.step = TeacherStep(cfg, endpoints, cfg.seed)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return to_table(self.step(from_table(batch)))


class FilterUDF:
    """Ray Data actor: :class:`FilterStep` (holds the student's tokenizer)."""

    def __init__(self, curate_json: str, student_json: str):
        cfg = CurateConfig.model_validate_json(curate_json)
        self.step = FilterStep(cfg.filters, token_counter(ModelConfig.model_validate_json(student_json)))

    def __call__(self, batch: pa.Table) -> pa.Table:
        return to_table(self.step(from_table(batch)))


class JudgeUDF:
    """Ray Data actor: :class:`QualityJudgeStep`."""

    def __init__(self, curate_json: str, judge_json: str, limiter, cache_uri: str,
                 billing: dict[str, Any] | None = None):
        cfg = CurateConfig.model_validate_json(curate_json)
        j = cfg.judge
        endpoint = MeteredEndpoint("judge", ModelConfig.model_validate_json(judge_json), j.price_in_per_mtok,
                                   j.price_out_per_mtok, cfg.retry, RemoteLimiter(limiter, cfg.rate_limits()),
                                   ResponseCache(cache_uri), billing_of(billing))
        self.step = QualityJudgeStep(cfg, endpoint)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return to_table(self.step(from_table(batch)))


def _ok_only(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.equal(batch.column("status"), OK))


def mark_duplicates(batch: pa.Table, lookup_ref: Any) -> pa.Table:
    """Set ``filtered`` (stage dedup) on rows dedup removed, naming the row kept and the cluster."""
    import ray

    removed = ray.get(lookup_ref)
    rows = from_table(batch)
    for r in rows:
        hit = removed.get(r["id"]) if r["status"] == OK else None
        if hit:
            r["duplicate_of"], r["cluster"] = hit["kept"], hit["cluster"]
            text = (f"exact duplicate of {hit['kept']}" if hit["kind"] == "exact"
                    else f"near duplicate of {hit['kept']} (Jaccard {hit['similarity']:.3f}, cluster {hit['cluster']})")
            mark(r, FILTERED, "dedup", text)
    return to_table(rows)


def curated_record(row: dict[str, Any]) -> dict[str, Any]:
    """A kept row in the curated schema."""
    return normalise_record({k: row.get(k) for k in CURATED_SCHEMA.names}, where=f"row {row.get('id')}")


def cache_uri(cfg: CogumiConfig) -> str:
    """The response cache: ``curate.cache`` or ``<run.root>/cache/responses`` (shared by runs)."""
    return cfg.curate.cache or posixpath.join(cfg.run.root, "cache", "responses")


def build_dataset(cfg: CogumiConfig, limiter, billing: dict[str, Any] | None = None) -> Any:
    """The lazy Ray Dataset of final-but-not-deduplicated rows (online mode throughout, or with ``billing``)."""
    ds = generate_and_filter(cfg, limiter, billing)
    return judge_rows(ds, cfg, limiter, (billing or {}).get("judge")) if cfg.curate.judge.enabled else ds


def generate_and_filter(cfg: CogumiConfig, limiter, billing: dict[str, Any] | None = None) -> Any:
    """Read -> teachers -> rule filters, lazily (``billing``: teacher name -> its batches, in batch mode)."""
    import ray.data

    cur, rc = cfg.curate, cfg.curate.ray
    curate_json, cache = cur.model_dump_json(), cache_uri(cfg)
    # a dead actor is restarted and its batch retried (max_task_retries follows: unlimited unless 0)
    restarts = {"max_restarts": rc.actor_max_restarts}
    ds = read_prompts(cur)
    check_unique_ids(ds)  # reads only ids and locations, before any teacher is paid
    ds = ds.map_batches(TeacherUDF, batch_format="pyarrow", batch_size=rc.batch_size,
                        compute=ray.data.ActorPoolStrategy(size=rc.teacher_workers), num_cpus=rc.teacher_num_cpus,
                        fn_constructor_kwargs={"curate_json": curate_json, "limiter": limiter, "cache_uri": cache,
                                               "billing": billing}, **restarts)
    return ds.map_batches(FilterUDF, batch_format="pyarrow", batch_size=rc.batch_size,
                          compute=ray.data.ActorPoolStrategy(size=1), num_cpus=rc.filter_num_cpus,
                          fn_constructor_kwargs={"curate_json": curate_json,
                                                 "student_json": cfg.student.model_dump_json()}, **restarts)


def judge_rows(ds: Any, cfg: CogumiConfig, limiter, billing: dict[str, Any] | None = None) -> Any:
    """The judge over ``ds``, lazily (``billing``: the judge's batches, in batch mode)."""
    import ray.data

    cur, rc = cfg.curate, cfg.curate.ray
    return ds.map_batches(JudgeUDF, batch_format="pyarrow", batch_size=rc.batch_size,
                          compute=ray.data.ActorPoolStrategy(size=rc.judge_workers), num_cpus=rc.judge_num_cpus,
                          fn_constructor_kwargs={"curate_json": cur.model_dump_json(),
                                                 "judge_json": (cur.judge.model or cfg.judge).model_dump_json(),
                                                 "limiter": limiter, "cache_uri": cache_uri(cfg),
                                                 "billing": billing}, max_restarts=rc.actor_max_restarts)


def batch_phases(cfg: CogumiConfig, rec, limiter) -> tuple[Any, dict[str, Any]]:
    """The judged rows (lazy) with teachers and judge in batch mode run through the provider's batch API.

    Teachers first: their requests are planned over the prompts and run to the end; then the
    filtered rows are written to ``work/filtered`` and the judge's requests planned over them.

    Returns:
        (dataset, billing per asker) — billing is recorded in the manifest's metrics.
    """
    import ray.data

    cur, rc = cfg.curate, cfg.curate.ray
    ledger, cache = rec.path("batches"), cache_uri(cfg)
    billing: dict[str, Any] = {}
    batch_teachers = {t.name: (t.model, t.batch, t.price_in_per_mtok, t.price_out_per_mtok)
                      for t in cur.teachers if t.mode == "batch"}
    if batch_teachers:
        prompts = read_prompts(cur)
        check_unique_ids(prompts)
        plan = prompts.map_batches(PlanTeacherRequests, batch_format="pyarrow", batch_size=rc.batch_size,
                                   compute=ray.data.ActorPoolStrategy(size=1), num_cpus=rc.filter_num_cpus,
                                   fn_constructor_kwargs={"curate_json": cur.model_dump_json(), "cache_uri": cache})
        billing |= run_batches(plan, ledger, cache, batch_teachers, rec.fs)
    ds = generate_and_filter(cfg, limiter, billing)
    if not cur.judge.enabled:
        return ds, billing
    if cur.judge.mode == "batch":
        judge_model = cur.judge.model or cfg.judge
        filtered = rec.path("work/filtered")
        ds.write_parquet(filtered, filesystem=rec.fs, ray_remote_args={"num_cpus": cur.ray.read_num_cpus})
        ds = ray.data.read_parquet(filtered, filesystem=rec.fs, schema=ROW_SCHEMA)
        plan = ds.map_batches(PlanJudgeRequests, batch_format="pyarrow", batch_size=rc.batch_size,
                              compute=ray.data.ActorPoolStrategy(size=1), num_cpus=rc.filter_num_cpus,
                              fn_constructor_kwargs={"curate_json": cur.model_dump_json(),
                                                     "judge_json": judge_model.model_dump_json(), "cache_uri": cache})
        prices = (cur.judge.price_in_per_mtok, cur.judge.price_out_per_mtok)
        billing |= run_batches(plan, ledger, cache, {"judge": (judge_model, cur.judge.batch, *prices)}, rec.fs)
    return judge_rows(ds, cfg, limiter, billing.get("judge")), billing


def configure_limiter(cfg: CurateConfig):
    """The cluster's limiter actor with this config's teacher and judge limits."""
    import ray

    handle = get_limiter()
    ray.get([handle.configure.remote(key, rpm, tpm) for key, (rpm, tpm) in cfg.rate_limits().items()])
    return handle


def run_curation(cfg: CogumiConfig, rec) -> dict[str, Any]:
    """Run the whole phase into the stage recorder ``rec`` (a :class:`~cogumi.artifacts.StageRecorder`).

    A local Ray started here is recorded in the run directory and stopped on SIGTERM or
    Ctrl-C (:mod:`cogumi.curate.ray_session`).

    Returns:
        The stats summary (also written as ``stats.json``).
    """
    import ray
    import ray.data

    cur = cfg.curate
    init_ray(cur.ray.address, rec.stage.run)
    limiter = configure_limiter(cur)
    fs = rec.fs
    work = rec.path("work/judged")
    if fs.get_file_info(posixpath.dirname(work)).type != pafs.FileType.NotFound:
        fs.delete_dir(posixpath.dirname(work))
    batched = any(t.mode == "batch" for t in cur.teachers) or (cur.judge.enabled and cur.judge.mode == "batch")
    if batched:
        dataset, billing = batch_phases(cfg, rec, limiter)
        rec.metrics["batches"] = {who: {"batches": len(b["batch_ids"]), "failed_rows": len(b["failed"]),
                                        "price_in_per_mtok": b["price_in"], "price_out_per_mtok": b["price_out"]}
                                  for who, b in billing.items()}
    else:
        dataset = build_dataset(cfg, limiter)
    dataset.write_parquet(work, filesystem=fs, ray_remote_args={"num_cpus": cur.ray.read_num_cpus})
    judged: Any = ray.data.read_parquet(work, filesystem=fs, schema=ROW_SCHEMA)  # ray's UDF types are too narrow

    lookup: dict[str, dict[str, Any]] = {}
    if cur.dedup.enabled:
        d = cur.dedup
        result = dedup_dataset(judged.map_batches(_ok_only, batch_format="pyarrow"), id_col="id",
                               fields=d.fields, score_col="quality_score", threshold=d.threshold,
                               num_perm=d.num_perm, k=d.ngram, seed=d.seed, recall_at_threshold=d.recall_at_threshold,
                               workers=max(1, int(ray.cluster_resources().get("CPU", 1))),
                               num_cpus=cur.ray.filter_num_cpus)
        lookup = removal_lookup(result)
        rec.metrics["dedup_candidate_pairs"] = result.candidates
        rec.metrics["dedup_verified_pairs"] = result.verified
    final = judged.map_batches(mark_duplicates, batch_format="pyarrow", fn_kwargs={"lookup_ref": ray.put(lookup)})

    prices = {t.name: (t.price_in_per_mtok, t.price_out_per_mtok) for t in cur.teachers}
    prices["judge"] = (cur.judge.price_in_per_mtok, cur.judge.price_out_per_mtok)
    stats = CurationStats(prices)
    acct_schema = pa.schema([ROW_SCHEMA.field(c) for c in ACCOUNTING_COLUMNS])
    jsonl = fs.open_output_stream(rec.path("curated.jsonl")) if cur.write_jsonl else None
    with pq.ParquetWriter(rec.path("curated.parquet"), CURATED_SCHEMA, filesystem=fs) as curated, \
            pq.ParquetWriter(rec.path("rows.parquet"), acct_schema, filesystem=fs) as accounting:
        for batch in final.iter_batches(batch_format="pyarrow", batch_size=4096):
            rows = from_table(batch)
            stats.add(rows)
            accounting.write_table(batch.select(ACCOUNTING_COLUMNS).cast(acct_schema))
            kept = [curated_record(r) for r in rows if r["status"] == OK]
            if kept:
                curated.write_table(pa.Table.from_pylist(kept, schema=CURATED_SCHEMA))
            if jsonl is not None:
                for k in kept:
                    meta = {f: k[f] for f in ("domain", "difficulty", "teacher", "quality_score", "tokens", "source")}
                    line = {"id": k["id"], "instruction": k["instruction"], "response": k["response"], "metadata": meta}
                    jsonl.write((json.dumps(line, ensure_ascii=False) + "\n").encode())
    if jsonl is not None:
        jsonl.close()
    fs.delete_dir(posixpath.dirname(work))
    if batched:
        rec.method["batch_ledger"] = BatchLedger(rec.path("batches"), fs).finish()

    summary = stats.summary()
    rec.method.update(describe_method(cfg))
    rec.write_json("stats.json", summary)
    rec.write_text("report.md", render_markdown(summary, rec.method))
    with fs.open_output_stream(rec.path("report.png")) as f:
        f.write(render_plot(summary))
    rec.metrics.update({"rows_input": summary["rows"]["input"], "rows_ok": summary["rows"]["ok"],
                        "rows_error": summary["rows"]["error"], "rows_filtered": summary["rows"]["filtered"],
                        "duplicates_exact": summary["duplicates_removed"]["exact"],
                        "duplicates_near": summary["duplicates_removed"]["near"],
                        "english_purity": summary["english_purity"], "cost_total_usd": summary["cost_total_usd"],
                        "cost": summary["cost"]})
    return summary


def describe_method(cfg: CogumiConfig) -> dict[str, str]:
    """What really ran, for the manifest and the report."""
    cur = cfg.curate
    judge = cur.judge.model or cfg.judge
    bands, rows = lsh_params(cur.dedup.threshold, cur.dedup.num_perm, cur.dedup.recall_at_threshold)
    teachers = ", ".join(f"{t.name}={t.model.backend}:{t.model.base_url or t.model.model}"
                         + (f" (batch API, {t.batch.discount:g} off unless explicit batch prices)"
                            if t.mode == "batch" else "") for t in cur.teachers)
    return {
        "prompts": cur.prompts + (f" (limit {cur.limit})" if cur.limit else ""),
        "teachers": teachers,
        "judge": (f"{judge.backend}:{judge.base_url or judge.model}, keep >= {cur.min_judge_score:g}"
                  + (", json_schema output" if cur.judge.structured_output else ", free-text parse"))
        + (", batch API for first verdicts" if cur.judge.mode == "batch" else "")
        if cur.judge.enabled else "off",
        "filters": (f"tokens {cur.filters.min_tokens}-{cur.filters.max_tokens} ({cfg.student.model} tokenizer), "
                    f"language {cur.filters.language or 'off'} (py3langid), pii {cur.filters.pii}"),
        "dedup": (f"exact + MinHash-LSH {cur.dedup.num_perm} perms, char {cur.dedup.ngram}-grams, "
                  f"Jaccard {cur.dedup.threshold}, {bands} bands x {rows} rows, exact-Jaccard verification")
        if cur.dedup.enabled else "off",
        "response_cache": cache_uri(cfg),
    }
