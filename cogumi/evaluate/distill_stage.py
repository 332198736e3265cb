"""``cogumi distill``: Phase 1C over Ray Data into the ``distill`` stage.

Outputs: ``distilled.jsonl`` (training rows ``{"instruction", "output", "metadata"}``,
ready for ``train.data=stage:distill/distilled.jsonl``), ``samples.jsonl`` (every
prompt with its samples, extracted answers, agreement and decision),
``stats.json`` (agreement statistics per category) and ``report.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

from cogumi.artifacts import RunDir, StageRecorder
from cogumi.config import CogumiConfig
from cogumi.evaluate import rayrun
from cogumi.evaluate.distill import DistillStep
from cogumi.evaluate.failures import to_jsonl
from cogumi.evaluate.fingerprint import model_inputs
from cogumi.evaluate.prompts import digest_rows, load_prompts, select

STAGE = "distill"
DISTILLED = "distilled.jsonl"  # output: the training rows (Phase 1C trains on it)
SAMPLE_KEYS = ("id", "category", "prompt", "answer", "strategy", "samples", "keys", "majority", "agreement",
               "verified", "decision", "error")


def training_rows(rows: list[dict[str, Any]], cfg: CogumiConfig) -> list[dict[str, Any]]:
    """The kept outputs as training examples."""
    out = []
    for r in rows:
        strategy = cfg.evaluate.distill.categories.get(r["category"])
        for i, text in enumerate(json.loads(r.get("kept") or "[]")):
            out.append({"instruction": r["prompt"], "output": text,
                        "metadata": {"domain": r["category"], "source": f"distill:{r.get('strategy')}",
                                     "id": f"{r['id']}#{i}" if i else r["id"],
                                     "train_temp": strategy.train_temp if strategy else None}})
    return out


def agreement_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per category: prompts, kept prompts and examples, errors, agreement and ground-truth accuracy."""
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    stats = {}
    for cat, items in sorted(by_cat.items()):
        agreements = [r["agreement"] for r in items if r.get("agreement") is not None]
        checked = [r for r in items if r.get("verified") is not None]
        kept = [r for r in items if json.loads(r.get("kept") or "[]")]
        hist = [0] * 10
        for a in agreements:
            hist[min(9, int(a * 10))] += 1
        stats[cat] = {
            "prompts": len(items), "kept_prompts": len(kept),
            "examples": sum(len(json.loads(r.get("kept") or "[]")) for r in items),
            "errors": sum(1 for r in items if r.get("error")),
            "strategy": items[0].get("strategy"),
            "mean_agreement": round(sum(agreements) / len(agreements), 4) if agreements else None,
            "agreement_histogram": hist if agreements else None,
            "checked_against_ground_truth": len(checked),
            "correct": sum(1 for r in checked if r["verified"]),
            "accuracy": round(sum(1 for r in checked if r["verified"]) / len(checked), 4) if checked else None,
        }
    return stats


def render_markdown(stats: dict[str, Any], total: int, cfg: CogumiConfig) -> str:
    """The distillation report."""
    dc = cfg.evaluate.distill
    lines = ["# Phase 1C self-consistency distillation", "",
             f"Model: `{cfg.student.model}` ({cfg.student.backend}); {dc.n_samples} samples per prompt for vote/"
             f"diverse categories; agreement threshold {dc.min_agreement:.0%}.", "",
             "| category | strategy | prompts | kept prompts | examples | mean agreement | checked | correct "
             "| errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for cat, s in stats.items():
        agree = "-" if s["mean_agreement"] is None else f"{s['mean_agreement']:.2f}"
        lines.append(f"| {cat} | {s['strategy']} | {s['prompts']} | {s['kept_prompts']} | {s['examples']} | {agree} "
                     f"| {s['checked_against_ground_truth']} | {s['correct']} | {s['errors']} |")
    lines += ["", f"{total} training examples in `distilled.jsonl`. 'correct' counts the generated answers "
              "that match the bundled ground truth (greedy answers for verified categories, majority answers "
              "for voted ones)."]
    return "\n".join(lines) + "\n"


def distill_hash(cfg: CogumiConfig) -> str:
    """Config hash of a distillation: the student and the distill settings."""
    data = {"student": cfg.student.model_dump(mode="json"), "distill": cfg.evaluate.distill.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def run_distill(cfg: CogumiConfig, rec: StageRecorder, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Generate, vote and write outputs into ``rec``; returns the summary."""
    dc, rcfg = cfg.evaluate.distill, cfg.evaluate.ray
    kwargs = {"model": cfg.student.model_dump_json(),
              "strategies": {c: s.model_dump() for c, s in dc.categories.items()},
              "n_samples": dc.n_samples, "min_agreement": dc.min_agreement, "max_diverse": dc.max_diverse,
              "diversity_threshold": dc.diversity_threshold, "keep_unverified": dc.keep_unverified,
              "verify_votes": dc.verify_votes, "max_tokens": dc.max_tokens, "system_prompt": dc.system_prompt,
              "code_timeout_s": dc.code_timeout_s, "seed": dc.seed}
    local = cfg.student.backend != "openai"
    done = rayrun.map_rows(rows, DistillStep, kwargs, rcfg, local=local)
    order = {r["id"]: i for i, r in enumerate(rows)}
    done.sort(key=lambda r: order[r["id"]])
    train = training_rows(done, cfg)
    stats = agreement_stats(done)
    rec.write_text(DISTILLED, to_jsonl(train))
    rec.write_text("samples.jsonl", to_jsonl([{k: r.get(k) for k in SAMPLE_KEYS} for r in done]))
    rec.write_json("stats.json", stats)
    rec.write_text("report.md", render_markdown(stats, len(train), cfg))
    rec.metrics.update(prompts=len(rows), examples=len(train),
                       kept_prompts=sum(s["kept_prompts"] for s in stats.values()),
                       errors=sum(s["errors"] for s in stats.values()),
                       generations=sum(int(r.get("gen_calls") or 0) for r in done),
                       completion_tokens=sum(int(r.get("gen_completion_tokens") or 0) for r in done))
    rec.method.update(model=f"{cfg.student.backend}:{cfg.student.model}", ray=rayrun.method(rcfg, local),
                      strategies=", ".join(f"{c}={s.keep}@{s.generate_temp:g}" for c, s in dc.categories.items()))
    return {"examples": len(train), "stats": stats}


def distill_stage(cfg: CogumiConfig, force: bool = False) -> dict[str, Any]:
    """``cogumi distill``: run (or skip when up to date) the distill stage.

    Returns:
        ``{"skipped", "stage", "summary"}``.
    """
    from cogumi.evaluate.sandbox import configure as configure_sandbox

    configure_sandbox(cfg.evaluate.sandbox)  # evaluate.sandbox.require etc. for every program run here
    dc = cfg.evaluate.distill
    rows = select(load_prompts(dc.prompts), list(dc.categories), dc.limit, split=dc.split)
    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(STAGE)
    cfg_hash = distill_hash(cfg)
    inputs = {"prompts": digest_rows(rows), **model_inputs(cfg.student, "student")}  # its weights, not its path
    if not force and stage.can_skip(cfg_hash, inputs):
        with run.fs.open_input_stream(stage.file("stats.json")) as f:
            stats = json.loads(f.read().decode())
        return {"skipped": True, "stage": stage.path,
                "summary": {"examples": sum(s["examples"] for s in stats.values()), "stats": stats}}
    with stage.begin(cfg_hash, inputs) as rec:
        summary = run_distill(cfg, rec, rows)
    return {"skipped": False, "stage": stage.path, "summary": summary}
