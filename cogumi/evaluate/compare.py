"""Phase 1B: compare the student with a reference model under a blind judge, extract failures.

Stages in the run directory:

``compare-reference/``
    ``answers.jsonl``: reference answers keyed by (endpoint, prompt, answer settings).
    Re-validation runs (a new adapter, a new label) reuse every cached answer and call
    the reference model only for prompts it has not answered yet — the spec's
    cost-optimised path (judge calls only).
``<label>/`` (default ``compare``)
    ``results.json`` (summary, decision, cost, baseline deltas), ``items.jsonl``,
    ``intermediate/<category>_intermediate.json``, ``failures.jsonl`` and
    ``failures/<category>_failures_from_benchmark.jsonl``, ``report.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from typing import Any

from cogumi.artifacts import RunDir, StageDir, StageRecorder
from cogumi.config import CogumiConfig
from cogumi.config_base import ModelConfig
from cogumi.errors import ArtifactError, CogumiError
from cogumi.evaluate import rayrun, scoring
from cogumi.evaluate.calls import AnswerStep
from cogumi.evaluate.failures import failure_records, to_jsonl
from cogumi.evaluate.fingerprint import model_inputs
from cogumi.evaluate.judge import PairwiseJudgeStep
from cogumi.evaluate.prompts import digest_rows, load_prompts, select

log = logging.getLogger(__name__)
FAILURES = "failures.jsonl"  # output: the losses and ties as training rows (Phase 1B.3 trains on it)
REFERENCE_STAGE = "compare-reference"


def endpoint_id(model: ModelConfig) -> str:
    """What identifies the answering model (for the reference cache key)."""
    where = model.base_url if model.backend == "openai" else model.model
    return f"{model.backend}|{where}|{model.model}|{model.gguf_file or ''}|{model.adapter or ''}"


def reference_key(model: ModelConfig, prompt: str, max_tokens: int, system_prompt: str) -> str:
    """Cache key of one reference answer."""
    blob = json.dumps([endpoint_id(model), prompt, max_tokens, system_prompt])
    return hashlib.sha256(blob.encode()).hexdigest()


def price_for(model: ModelConfig, prices: dict[str, Any]) -> tuple[float, float, str]:
    """(USD/Mtok in, out, source) for a model: config, then the registry, else free/unknown."""
    if model.model in prices:
        p = prices[model.model]
        return p.input, p.output, "evaluate.compare.prices"
    if model.backend != "openai":
        return 0.0, 0.0, f"local inference ({model.backend})"
    from cogumi.models.registry import get_model

    try:
        spec = get_model(model.model)
        if not spec.is_local:
            return spec.price_in_per_mtok, spec.price_out_per_mtok, f"registry ({spec.name})"
    except CogumiError:
        pass
    return 0.0, 0.0, "unknown: set evaluate.compare.prices"


def _read_jsonl(stage: StageDir, name: str) -> list[dict[str, Any]]:
    fs = stage.run.fs
    try:
        with fs.open_input_stream(stage.file(name)) as f:
            text = f.read().decode()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def reference_answers(cfg: CogumiConfig, run: RunDir,
                      rows: list[dict[str, Any]]) -> tuple[dict[str, Any], set[str], int]:
    """Reference answers for ``rows``, from the cache or the reference model.

    Returns:
        ({row id: cache entry or {"reference_error"}}, ids answered now, reference calls made now).
    """
    cc, rcfg = cfg.evaluate.compare, cfg.evaluate.ray
    model = cc.reference or cfg.judge
    stage = run.stage(REFERENCE_STAGE)
    manifest = stage.manifest()
    cache = {e["key"]: e for e in _read_jsonl(stage, "answers.jsonl")} if manifest else {}
    keys = {r["id"]: reference_key(model, r["prompt"], cc.answer_tokens, cc.system_prompt) for r in rows}
    missing = [r for r in rows if keys[r["id"]] not in cache]
    calls, fresh = 0, set()
    if missing:
        with stage.begin(hashlib.sha256(b"reference-cache-v1").hexdigest()) as rec:
            kwargs = {"model": model.model_dump_json(), "role": "reference", "max_tokens": cc.answer_tokens,
                      "system_prompt": cc.system_prompt, "attempts": cc.attempts, "threads": rcfg.threads}
            answered = rayrun.map_rows(missing, AnswerStep, kwargs, rcfg, local=model.backend != "openai")
            for a in answered:
                calls += int(a.get("reference_calls") or 0)
                if a.get("reference_error"):
                    continue  # failures are not cached: the next run asks again
                fresh.add(a["id"])
                cache[keys[a["id"]]] = {"key": keys[a["id"]], "prompt": a["prompt"], "endpoint": endpoint_id(model),
                                        **{k: a.get(k) for k in ("reference_answer", "reference_prompt_tokens",
                                                                 "reference_completion_tokens",
                                                                 "reference_latency_s")}}
            rec.write_text("answers.jsonl", to_jsonl(list(cache.values())))
            rec.metrics.update(cached_answers=len(cache), new_calls=calls)
            where = rayrun.method(rcfg, model.backend != "openai")
            rec.method["reference"] = f"{model.backend}:{model.model} ({where})"
        errors = {a["id"]: a["reference_error"] for a in answered if a.get("reference_error")}
    else:
        errors = {}
    out = {}
    for r in rows:
        entry = cache.get(keys[r["id"]])
        out[r["id"]] = entry if entry else {"reference_error": errors.get(r["id"], "no reference answer")}
    return out, fresh, calls


def compare_hash(cfg: CogumiConfig) -> str:
    """Config hash of a comparison: student, judge, reference and the compare settings."""
    data = {"student": cfg.student.model_dump(mode="json"), "judge": cfg.judge.model_dump(mode="json"),
            "compare": cfg.evaluate.compare.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def load_baseline(run: RunDir, label: str) -> dict[str, Any]:
    """The summary of an earlier comparison stage in this run."""
    stage = run.stage(label)
    if not stage.finished():
        raise ArtifactError(f"baseline comparison '{label}' has not finished in this run", stage.path,
                            f"run `cogumi compare --label {label}` first, or drop --baseline")
    with run.fs.open_input_stream(stage.file("results.json")) as f:
        return json.loads(f.read().decode())["summary"]


def run_compare(cfg: CogumiConfig, rec: StageRecorder, run: RunDir, rows: list[dict[str, Any]],
                label: str, baseline_label: str | None = None) -> dict[str, Any]:
    """Answer, judge, score and write everything into the stage recorder ``rec``.

    Returns:
        The results written to ``results.json``.
    """
    cc, rcfg = cfg.evaluate.compare, cfg.evaluate.ray
    baseline = load_baseline(run, baseline_label) if baseline_label else None
    reference, fresh, ref_calls = reference_answers(cfg, run, rows)
    local_kwargs = {"model": cfg.student.model_dump_json(), "role": "local", "max_tokens": cc.answer_tokens,
                    "system_prompt": cc.system_prompt, "attempts": cc.attempts,
                    "threads": rcfg.threads if cfg.student.backend == "openai" else 1}
    answered = rayrun.map_rows(rows, AnswerStep, local_kwargs, rcfg, local=cfg.student.backend != "openai")
    joined = [a | {k: v for k, v in reference[a["id"]].items() if k.startswith("reference_")} for a in answered]
    judge_model = cfg.judge
    judge_kwargs = {"model": judge_model.model_dump_json(), "max_tokens": cc.judge_tokens,
                    "parse_attempts": cc.parse_attempts, "structured_output": cc.structured_output,
                    "swap": cc.swap_positions, "attempts": cc.attempts,
                    "threads": rcfg.threads if judge_model.backend == "openai" else 1}
    judged = rayrun.map_rows(joined, PairwiseJudgeStep, judge_kwargs, rcfg, local=judge_model.backend != "openai")
    order = {r["id"]: i for i, r in enumerate(rows)}
    judged.sort(key=lambda r: order[r["id"]])
    items = [r | scoring.outcome(r, cc.margin) for r in judged]

    summary = scoring.summarise(items)
    decision = scoring.decision(summary["overall"]["score"], cc.skip_1c_at, cc.require_1c_below)
    reference_model = cc.reference or cfg.judge
    usage = {"local": _usage(items, "local"), "judge": _usage(items, "judge"),
             "reference": {"calls": ref_calls, **_usage([i for i in items if i["id"] in fresh], "reference",
                                                          calls=False)}}
    prices = {"local": price_for(cfg.student, cc.prices), "judge": price_for(judge_model, cc.prices),
              "reference": price_for(reference_model, cc.prices)}
    cost = scoring.cost_report(usage, prices)
    deltas = ({c: (t["score"] - baseline["categories"][c]["score"])
               for c, t in summary["categories"].items()
               if t["score"] is not None and baseline["categories"].get(c, {}).get("score") is not None}
              if baseline else {})
    results = {"label": label, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "summary": summary, "decision": decision,
               "weak_categories": scoring.weak_categories(summary, cc.skip_1c_at),
               "cost": cost, "baseline": baseline_label, "deltas": deltas,
               "reference_cache": {"answered_now": len(fresh), "new_calls": ref_calls,
                                   "reused": sum(1 for i in items if not i.get("reference_error")) - len(fresh)}}
    _write(rec, items, results, summary, decision, cost, label, baseline, baseline_label, cc.margin)
    o = summary["overall"]
    rec.metrics.update(score=o["score"], wins=o["win"], losses=o["loss"], ties=o["tie"], errors=o["error"],
                       judged=o["judged"], reference_calls=ref_calls, judge_calls=usage["judge"]["calls"],
                       local_calls=usage["local"]["calls"], cost_usd=cost["total_usd"],
                       phase_1c=decision["phase_1c"], decision=decision["text"],
                       failures=sum(1 for i in items if i["outcome"] in ("loss", "tie")))
    local_where = rayrun.method(rcfg, cfg.student.backend != "openai")
    rec.method.update(local=f"{cfg.student.backend}:{cfg.student.model} ({local_where})",
                      reference=f"{reference_model.backend}:{reference_model.model} (cached in {REFERENCE_STAGE})",
                      judge=f"{judge_model.backend}:{judge_model.model} "
                            f"({'two passes, positions swapped' if cc.swap_positions else 'one pass, local first'}; "
                            f"{'JSON-schema output' if cc.structured_output else 'free text'})")
    return results


def _usage(items: list[dict[str, Any]], role: str, calls: bool = True) -> dict[str, int]:
    out = {"prompt_tokens": sum(int(i.get(f"{role}_prompt_tokens") or 0) for i in items),
           "completion_tokens": sum(int(i.get(f"{role}_completion_tokens") or 0) for i in items)}
    if calls:
        out["calls"] = sum(int(i.get(f"{role}_calls") or 0) for i in items)
    return out


ITEM_KEYS = ("id", "category", "prompt", "answer", "local_answer", "reference_answer", "outcome", "local_score",
             "reference_score", "passes", "first_position_bonus", "reason", "local_error", "reference_error",
             "judge_pass1", "judge_pass2")


def _write(rec: StageRecorder, items: list[dict[str, Any]], results: dict[str, Any], summary: dict[str, Any],
           decision: dict[str, Any], cost: dict[str, Any], label: str, baseline: dict[str, Any] | None,
           baseline_label: str | None, margin: float) -> None:
    slim = [{k: i.get(k) for k in ITEM_KEYS if i.get(k) is not None} for i in items]
    rec.write_json("results.json", results)
    rec.write_text("items.jsonl", to_jsonl(slim))
    for cat, tally in summary["categories"].items():
        rec.write_json(f"intermediate/{cat}_intermediate.json",
                       {"category": cat, **tally, "items": [i for i in slim if i["category"] == cat]})
    failures = failure_records(items, label)
    rec.write_text(FAILURES, to_jsonl([r for recs in failures.values() for r in recs]))
    for cat, records in failures.items():
        rec.write_text(f"failures/{cat}_failures_from_benchmark.jsonl", to_jsonl(records))
    rec.write_text("report.md", scoring.render_markdown(summary, decision, cost, label, baseline, baseline_label,
                                                        margin))


def compare_stage(cfg: CogumiConfig, label: str = "compare", baseline: str | None = None,
                  force: bool = False) -> dict[str, Any]:
    """``cogumi compare``: run (or skip, when up to date) the comparison stage ``label``.

    Returns:
        ``{"skipped", "stage", "results"}``.
    """
    import re

    if not re.fullmatch(r"compare(-[A-Za-z0-9_.-]+)?", label) or label == REFERENCE_STAGE:
        raise CogumiError(f"'{label}' cannot name a comparison stage", "--label",
                          f"use 'compare' or 'compare-<name>' (e.g. compare-1b1), not '{REFERENCE_STAGE}'")
    cc = cfg.evaluate.compare
    rows = select(load_prompts(cc.prompts), cc.categories, cc.samples_per_category)
    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(label)
    cfg_hash, inputs = compare_hash(cfg), {"prompts": digest_rows(rows), "baseline": baseline or ""}
    inputs |= model_inputs(cfg.student, "student") | model_inputs(cfg.judge, "judge")  # weights, not paths
    if cc.reference is not None:
        inputs |= model_inputs(cc.reference, "reference")
    if not force and stage.can_skip(cfg_hash, inputs):
        with run.fs.open_input_stream(stage.file("results.json")) as f:
            return {"skipped": True, "stage": stage.path, "results": json.loads(f.read().decode())}
    with stage.begin(cfg_hash, inputs) as rec:
        results = run_compare(cfg, rec, run, rows, label, baseline)
    log.info("%s", results["decision"]["text"])
    return {"skipped": False, "stage": stage.path, "results": results}
