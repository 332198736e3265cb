"""The ``final-eval`` stage: the starting model against the served system, on held-out items of every domain.

The served system is built in-process from exactly what the run serves (the promoted
GGUF, the promoted adapters, the router) through the same routing service as Ray Serve
(:func:`cogumi.serve.local.build_local_system`); each item's likelihood is scored under
the model its route picked. Every figure comes with its sample size and a 95 % interval
on the paired difference, and the headline says better / equal within noise / worse.
Writes ``<run>/final-eval/report.md`` (the report's first table) and ``results.json``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from typing import Any

from cogumi.artifacts import RunDir
from cogumi.config import CogumiConfig, ModelConfig
from cogumi.evaluate.heldout import HeldOutItem, Scorer, scorer_for
from cogumi.evaluate.paired import TABLE_HEADER, PairedResult, overall, render_row
from cogumi.models.inference import SamplingParams
from cogumi.evaluate.before_after import answer_results, held_out_suites, likelihood_results

log = logging.getLogger(__name__)
STAGE = "final-eval"
SERVED_STAGES = ("compress.gguf", "modifiers", "router")


def final_eval_key(start: ModelConfig, served: CogumiConfig, run: RunDir) -> tuple[str, dict[str, str]]:
    """(config hash, inputs): the eval settings, the starting model, what is served and its artifacts."""
    s = served.serve
    data = {"final_eval": served.pipeline.final_eval.model_dump(mode="json"), "start": start.model_dump(mode="json"),
            "base": s.base.model_dump(mode="json"), "adapters": s.adapters_dir, "modifiers": s.modifiers,
            "routing": s.routing.model_dump(mode="json")}
    inputs = {n: run.stage(n).digest() for n in SERVED_STAGES if run.stage(n).finished()}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(), inputs


def headline(verdict: str, results: list[PairedResult]) -> str:
    """One line for the console and the top of the report: the verdict and the metrics that moved."""
    def fmt(r: PairedResult) -> str:
        return f"{r.metric} {r.a:.3g} -> {r.b:.3g} ({r.diff:+.3g}, 95% CI [{r.low:+.2g}, {r.high:+.2g}], n={r.n})"

    better = [fmt(r) for r in results if r.verdict == "better"]
    worse = [fmt(r) for r in results if r.verdict == "worse"]
    same = sum(r.verdict == "equal within noise" for r in results)
    word = {"better": "BETTER than", "worse": "WORSE than", "mixed": "MIXED against",
            "equal within noise": "EQUAL WITHIN NOISE to"}[verdict]
    parts = ([f"better on {'; '.join(better)}"] if better else []) + ([f"worse on {'; '.join(worse)}"] if worse else [])
    parts.append(f"{same} of {len(results)} metrics equal within noise")
    return f"served system vs starting model on held-out data: {word} the start — " + " · ".join(parts)


def final_eval_stage(start: ModelConfig, served: CogumiConfig, force: bool = False) -> dict[str, Any]:
    """Run (or skip, when nothing it reads changed) the final evaluation.

    Args:
        start: the model the run started from (the configured student).
        served: the config that serves what the run built (``PipelinePlan.built_config()``).

    Returns:
        ``{"skipped", "headline", "verdict", "results"}``.
    """
    from cogumi.evaluate.sandbox import configure as configure_sandbox

    configure_sandbox(served.evaluate.sandbox)  # evaluate.sandbox.require etc. for every program run here
    run = RunDir.open(served.run.root, served.run.name)
    stage = run.stage(STAGE)
    key = final_eval_key(start, served, run)
    if not force and stage.can_skip(*key):
        m = stage.finished_manifest().metrics
        return {"skipped": True, "headline": m["headline"], "verdict": m["verdict"], "results": m["results"]}
    with stage.begin(*key) as rec:
        results, rows, routes = evaluate(start, served)
        verdict = overall(results)
        line = headline(verdict, results)
        s = served.serve
        rec.method.update(start=f"{start.backend}:{start.model}", served_base=f"{s.base.backend}:{s.base.model}",
                          adapters=str(s.adapters_dir), router=str(s.routing.artifact or "built-in cascade"),
                          statistics="paired per-item differences, Student-t 95 % interval",
                          system="cogumi.serve.local (the Serve routing service in-process)")
        rec.metrics.update(headline=line, verdict=verdict, results=[r.as_dict() for r in results], routes=routes)
        rec.write_json("results.json", {"results": [r.as_dict() for r in results], "items": rows})
        rec.write_text("report.md", render(line, results, routes, rec.method))
    log.info("final-eval: %s", line)
    return {"skipped": False, "headline": line, "verdict": verdict, "results": [r.as_dict() for r in results]}


def render(line: str, results: list[PairedResult], routes: dict[str, int], method: dict[str, str]) -> str:
    """The stage's Markdown: headline, the start-vs-served table, what was compared."""
    lines = ["# Served system vs starting model", "", line, "",
             TABLE_HEADER.format(a="start", b="served"), *[render_row(r) for r in results], "",
             f"- start: `{method['start']}`; served: base `{method['served_base']}`, adapters `{method['adapters']}`, "
             f"router {method['router']}",
             f"- routes the served system took on the held-out prompts: {routes or 'none'} (a difference on prompts "
             "the base answered comes from the served base model: its training and its compression, not an adapter)",
             "- NLL/token: negative log-likelihood of the reference answer (lower is better); accuracy and pass@1 "
             "from greedy answers checked by exact number match / the tests in the code sandbox (higher is better)",
             "- difference: served minus start, mean over items, with a paired Student-t 95 % interval; "
             "'equal within noise' means the interval contains zero"]
    return "\n".join(lines) + "\n"


def evaluate(start: ModelConfig, served: CogumiConfig) -> tuple[list[PairedResult], list[dict[str, Any]],
                                                                dict[str, int]]:
    """Both systems on every suite: answers first (they decide the served routes), then likelihoods."""
    from cogumi.models.inference import make_backend
    from cogumi.serve.local import build_local_system
    from cogumi.serve.service import Target

    fe = served.pipeline.final_eval
    threads = fe.n_threads or os.cpu_count() or 1
    suites = held_out_suites(fe.text_items, fe.math_items, fe.code_items)
    system = build_local_system(served.serve, threads)
    start_model = start.model_copy(update={"n_threads": threads}) if start.backend == "llamacpp" else start
    start_backend = make_backend(start_model)
    scorers: dict[str, Scorer] = {}
    route_of: dict[str, str | None] = {}
    loop = asyncio.new_event_loop()

    def params(item: HeldOutItem) -> SamplingParams:
        return SamplingParams(max_tokens=fe.math_max_tokens if item.suite == "math" else fe.code_max_tokens,
                              temperature=0.0)

    def answer_start(item: HeldOutItem) -> str:
        return start_backend.chat(item.messages, params(item)).text

    def answer_served(item: HeldOutItem) -> str:
        out = loop.run_until_complete(system.service.answer("chat", item.messages, params(item), Target("auto")))
        route_of[item.id] = out.decision.modifier
        if out.answer is None:
            raise RuntimeError(f"the served system returned no answer for held-out item {item.id} "
                               f"(route {out.decision.route}: {out.decision.reason})")
        return str(out.answer["text"])

    def served_scorer(item: HeldOutItem) -> Scorer:
        route = route_of.get(item.id) or ""
        if route not in scorers:
            scorers[route] = scorer_for(served.serve.base, system.adapters.get(route) if route else None,
                                        n_threads=threads)
        return scorers[route]

    try:
        answers, answer_rows = answer_results(suites, answer_start, answer_served)
    finally:
        loop.close()
        start_backend.close()
        system.close()
    try:
        scorers["<start>"] = start_scorer = scorer_for(start, n_threads=threads)
        likelihoods, nll_rows = likelihood_results(suites, lambda item: start_scorer, served_scorer)
    finally:
        for sc in scorers.values():
            sc.close()
    routes: dict[str, int] = {}
    for r in route_of.values():
        routes[r or "base"] = routes.get(r or "base", 0) + 1
    return likelihoods + answers, nll_rows + answer_rows, routes
