"""Promotion of a trained model: it replaces the current one only when it passes its gate on held-out items.

The gate (``pipeline.gate``) scores both models on the same held-out suites (text,
math, code references; likelihoods only, so it costs seconds) and rejects the
candidate when

- held-out text NLL per token rises by more than ``max_text_nll_increase`` (forgetting), or
- any domain suite is worse with a 95 % interval that excludes zero.

Each decision is a stage ``gate.<train stage>`` with a manifest, so an unchanged rerun
reuses it and the report shows it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from cogumi.artifacts import RunDir
from cogumi.config import CogumiConfig, ModelConfig
from cogumi.evaluate.heldout import HFScorer
from cogumi.evaluate.paired import TABLE_HEADER, PairedResult, render_row
from cogumi.evaluate.before_after import held_out_suites, likelihood_results

log = logging.getLogger(__name__)


def decide(results: list[PairedResult], max_text_increase: float) -> tuple[bool, str]:
    """(promoted, why) from the candidate-vs-current results (B = candidate)."""
    problems = []
    for r in results:
        if r.metric.startswith("text:"):
            rise = r.b / r.a - 1.0 if r.a else 0.0
            if rise > max_text_increase:
                problems.append(f"held-out text NLL/token {r.a:.4f} -> {r.b:.4f} ({100 * rise:+.1f}%, limit "
                                f"+{100 * max_text_increase:.0f}%)")
        elif r.verdict == "worse":
            problems.append(f"{r.metric} {r.a:.4f} -> {r.b:.4f} (worse: 95% CI [{r.low:+.3g}, {r.high:+.3g}], "
                            f"n={r.n})")
    if problems:
        return False, "; ".join(problems)
    return True, "; ".join(f"{r.metric} {r.a:.4f} -> {r.b:.4f} ({r.verdict})" for r in results)


def gate_training(cfg: CogumiConfig, stage: str, candidate_dir: str, current: ModelConfig | str,
                  force: bool = False) -> dict[str, Any]:
    """Score ``candidate_dir`` (a merged model) against ``current`` and record the decision.

    Args:
        stage: the training stage (the record is ``gate.<stage>``).
        current: the model it would replace: a merged folder of an earlier stage, or the
            starting student's config.

    Returns:
        ``{"promoted", "reason", "results", "skipped"}``.
    """
    from cogumi.models.loading import hf_checkpoint

    g = cfg.pipeline.gate
    run = RunDir.open(cfg.run.root, cfg.run.name)
    rec_stage = run.stage(f"gate.{stage}")
    current_ref = current if isinstance(current, str) else f"{current.backend}:{current.model}"
    key = hashlib.sha256(json.dumps({"gate": g.model_dump(mode="json"), "current": current_ref},
                                    sort_keys=True).encode()).hexdigest()
    inputs = {"candidate": run.stage(stage).digest()}
    if not force and rec_stage.can_skip(key, inputs):
        m = rec_stage.finished_manifest().metrics
        return {"skipped": True, "promoted": m["promoted"], "reason": m["reason"], "results": m["results"]}
    with rec_stage.begin(key, inputs) as rec:
        suites = held_out_suites(None, g.math_items, g.code_items)
        current_dir = current if isinstance(current, str) else hf_checkpoint(current)
        a, b = HFScorer(current_dir), HFScorer(candidate_dir)
        try:
            results, rows = likelihood_results(suites, lambda item: a, lambda item: b)
        finally:
            a.close()
            b.close()
        promoted, reason = decide(results, g.max_text_nll_increase)
        rec.metrics.update(promoted=promoted, reason=reason, results=[r.as_dict() for r in results],
                           status="ran" if promoted else "rejected")
        rec.method.update(current=current_ref, candidate=candidate_dir,
                          rule=f"text NLL rise <= {100 * g.max_text_nll_increase:.0f}%, no domain worse (95% CI)")
        rec.write_json("results.json", {"results": [r.as_dict() for r in results], "items": rows})
        verdict = "promoted" if promoted else "REJECTED"
        rec.write_text("report.md", "\n".join([
            f"# Gate for {stage}: {verdict}", "", reason, "", TABLE_HEADER.format(a="current", b="candidate"),
            *[render_row(r) for r in results], ""]))
    log.log(logging.INFO if promoted else logging.WARNING, "gate.%s: %s — %s", stage,
            "promoted" if promoted else "rejected", reason)
    return {"skipped": False, "promoted": promoted, "reason": reason, "results": [r.as_dict() for r in results]}
