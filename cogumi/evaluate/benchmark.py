"""``cogumi benchmark``: lm-eval tasks, code pass@1, perplexity and fixed-prompt samples.

Writes into the ``benchmark`` stage: ``results/<timestamp>.json`` (kept across runs),
``results.json`` (the latest), ``samples.jsonl`` (lm-eval and code items) and
``report.md`` with deltas against the saved baseline (``baseline.json``, written
by ``--save-baseline``) or against ``evaluate.benchmark.baseline``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cogumi.artifacts import RunDir, StageRecorder
from cogumi.config import CogumiConfig
from cogumi.errors import CogumiError
from cogumi.evaluate import codebench, harness, perplexity, report
from cogumi.evaluate.failures import to_jsonl
from cogumi.evaluate.fingerprint import model_inputs
from cogumi.evaluate.sandbox import sandbox_method

log = logging.getLogger(__name__)
STAGE = "benchmark"


def benchmark_hash(cfg: CogumiConfig) -> str:
    """Config hash: the student and the benchmark settings."""
    data = {"student": cfg.student.model_dump(mode="json"),
            "benchmark": cfg.evaluate.benchmark.model_dump(mode="json", exclude={"baseline"})}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def run_parts(cfg: CogumiConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run every configured part on the student; returns (results, per-item samples)."""
    from cogumi.models.inference import make_backend

    b, model = cfg.evaluate.benchmark, cfg.student
    stamp = datetime.now(timezone.utc)
    results: dict[str, Any] = {"timestamp": stamp.isoformat(timespec="seconds"),
                               "model": model.model_dump(mode="json"), "method": {}}
    samples: list[dict[str, Any]] = []
    if "harness" in b.parts:
        h = harness.run_harness(model, b.harness)
        samples += h.pop("samples")
        results["harness"] = h
        results["method"]["harness"] = f"{h['method']} (lm-eval {h['lm_eval_version']})"
    if "code" in b.parts or "generations" in b.parts:
        backend = make_backend(model)
        try:
            if "code" in b.parts:
                c = b.code
                results["code"] = {}
                for suite in c.suites:
                    problems = (codebench.load_humaneval(c.limit) if suite == "humaneval"
                                else codebench.load_mbpp(c.mbpp_path, c.limit))
                    res = codebench.run_suite(backend, problems, c.max_tokens, c.prompt_style, c.timeout_s,
                                              c.memory_mb, c.workers)
                    samples += [{"task": suite, **p} for p in res.pop("problems")]
                    results["code"][suite] = res
                results["method"]["code"] = (f"greedy {c.prompt_style} answers via {backend.name}; sandbox: "
                                             + "; ".join(f"{k}={v}" for k, v in sandbox_method().items()))
            if "generations" in b.parts:
                prompts = perplexity.read_prompts(b.perplexity.prompts_path)
                results["generations"] = perplexity.generations(backend, prompts, b.perplexity.generation_tokens)
                results["method"]["generations"] = f"greedy chat via {backend.name}"
        finally:
            backend.close()
    if "perplexity" in b.parts:
        ppl = perplexity.perplexity(model, b.perplexity)
        results["perplexity"] = ppl
        results["method"]["perplexity"] = ppl.get("method", ppl.get("skipped", ""))
    return results, samples


def load_baseline(run: RunDir, path: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The baseline results: ``path`` if given, else the stage's saved ``baseline.json`` (or none)."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise CogumiError(f"baseline results {p} do not exist", "evaluate.benchmark.baseline",
                              "point it at a results JSON written by `cogumi benchmark`")
        try:
            return json.loads(p.read_text()), str(p)
        except json.JSONDecodeError as exc:
            raise CogumiError(f"baseline {p} is not JSON ({exc.msg})", str(p), "use a results/*.json file") from None
    stage = run.stage(STAGE)
    try:
        with run.fs.open_input_stream(stage.file("baseline.json")) as f:
            return json.loads(f.read().decode()), "saved baseline (benchmark/baseline.json)"
    except (FileNotFoundError, OSError):
        return None, None


def write_results(rec: StageRecorder, results: dict[str, Any], samples: list[dict[str, Any]],
                  baseline: dict[str, Any] | None, baseline_name: str | None, save_baseline: bool) -> None:
    """Timestamped JSON, latest JSON, samples, Markdown report, optional new baseline."""
    results["deltas"] = report.deltas(results, baseline)
    results["baseline"] = baseline_name
    stamp = results["timestamp"].replace(":", "").replace("-", "")
    rec.write_json(f"results/{stamp}.json", results)
    rec.write_json("results.json", results)
    rec.write_text("samples.jsonl", to_jsonl(samples))
    rec.write_text("report.md", report.render_markdown(results, baseline, baseline_name))
    if save_baseline:
        rec.write_json("baseline.json", results)
    for name, m in report.flat_metrics(results).items():
        rec.metrics[name] = m["value"]
    rec.method.update(results["method"])


def benchmark_stage(cfg: CogumiConfig, force: bool = False, save_baseline: bool = False) -> dict[str, Any]:
    """``cogumi benchmark``: run (or skip when up to date) the benchmark stage.

    Returns:
        ``{"skipped", "stage", "results"}``.
    """
    from cogumi.evaluate.sandbox import configure as configure_sandbox

    configure_sandbox(cfg.evaluate.sandbox)  # evaluate.sandbox.require etc. for every program run here
    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(STAGE)
    cfg_hash, inputs = benchmark_hash(cfg), model_inputs(cfg.student, "student")  # its weights, not its path
    if not force and not save_baseline and stage.can_skip(cfg_hash, inputs):
        with run.fs.open_input_stream(stage.file("results.json")) as f:
            return {"skipped": True, "stage": stage.path, "results": json.loads(f.read().decode())}
    baseline, baseline_name = load_baseline(run, cfg.evaluate.benchmark.baseline)
    with stage.begin(cfg_hash, inputs) as rec:
        results, samples = run_parts(cfg)
        write_results(rec, results, samples, baseline, baseline_name, save_baseline)
    return {"skipped": False, "stage": stage.path, "results": results}
