"""The pipeline's stages and how each one's config follows from what earlier stages built.

Pure derivation (``*_config`` functions: config in, config out) is kept apart from
running: :class:`PipelinePlan` knows which training stage produced the current
student and turns the phase functions into :class:`~cogumi.pipeline.runner.PipelineStage`.

The chain: curate → train (1A) → benchmark + compare (1B judge) → train-1b (on the
comparison's failures) → distill + train-1c (when the decision tree asks) → compress
(the latest merged model) → modifiers (adapters on that model) → router (features from
the compressed GGUF that is served) → serve (GGUF base + GGUF LoRA modifiers + router).
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

from cogumi.artifacts import RunDir, stage_ref
from cogumi.config import CogumiConfig, ModelConfig
from cogumi.errors import ArtifactError, CogumiError
from cogumi.pipeline.config import FollowUpTraining
from cogumi.pipeline.contracts import StageResult
from cogumi.pipeline.runner import PipelineStage

TRAIN_STAGES = ("train-1c", "train-1b", "train")  # newest first
DECISION_RANK = {"skip": 0, "undecided": 0, "optional": 1, "required": 2}
WHEN_RANK = {"always": 0, "optional": 1, "required": 2, "never": 99}


# ---------------------------------------------------------------- pure derivation


def output(run: RunDir, stage: str, name: str) -> str:
    """Where output ``name`` of ``stage`` lives in ``run``: a local path or a URI on the run's filesystem."""
    return run.resolve(stage_ref(stage, name)).uri()


def merged_dir(run: RunDir, train_stage: str) -> str:
    """Where a training stage of this run writes its merged HF model."""
    from cogumi.train.outputs import MERGED

    return output(run, train_stage, MERGED)


def trained_student(cfg: CogumiConfig, run: RunDir, train_stage: str) -> ModelConfig:
    """The student after ``train_stage``: its merged model through the transformers backend."""
    return ModelConfig.model_validate({"backend": "transformers", "model": merged_dir(run, train_stage),
                                       "n_ctx": cfg.student.n_ctx, "device": cfg.student.device,
                                       "timeout_s": cfg.student.timeout_s})


def train_config(cfg: CogumiConfig) -> CogumiConfig:
    """Phase 1A: the ``train`` section as written, always merged (compression needs the merged model)."""
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"merge": True})})


def followup_train_config(cfg: CogumiConfig, stage: str, data: str, previous: str,
                          follow: FollowUpTraining) -> CogumiConfig:
    """Phase 1B/1C: continue ``previous``'s adapter on ``data`` at the follow-up learning rate."""
    from cogumi.train.outputs import ADAPTER

    update: dict[str, Any] = {"stage": stage, "data": data, "init_adapter": stage_ref(previous, ADAPTER),
                              "learning_rate": follow.learning_rate, "warmup_ratio": follow.warmup_ratio,
                              "merge": True}
    if follow.max_steps is not None:
        update["max_steps"] = follow.max_steps
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=update)})


def with_student(cfg: CogumiConfig, student: ModelConfig) -> CogumiConfig:
    """``cfg`` evaluating ``student`` instead of the configured one."""
    return cfg.model_copy(update={"student": student})


def compress_config(cfg: CogumiConfig, run: RunDir, train_stage: str | None) -> CogumiConfig:
    """Compress the latest merged model (the configured ``compress.model`` when nothing was trained)."""
    if train_stage is None or cfg.compress.model is not None:
        return cfg
    return cfg.model_copy(update={"compress": cfg.compress.model_copy(
        update={"model": merged_dir(run, train_stage)})})


def modifiers_config(cfg: CogumiConfig, run: RunDir, train_stage: str | None) -> CogumiConfig:
    """Modifiers mine and train on the latest trained student (unless ``modifiers.base`` names one)."""
    if train_stage is None:
        return cfg
    student = trained_student(cfg, run, train_stage)
    mods = cfg.modifiers if cfg.modifiers.base else cfg.modifiers.model_copy(update={"base": student})
    return cfg.model_copy(update={"student": student, "modifiers": mods})


def served_gguf(run: RunDir) -> str:
    """The compressed GGUF the pipeline serves: the one the gguf step promoted (smallest that passed its gate)."""
    from cogumi.compress.steps import GGUF_STAGE, served_gguf_name

    return output(run, GGUF_STAGE, served_gguf_name(run))


def serving_config(cfg: CogumiConfig, gguf: str | None, adapters: str | None, router: str | None) -> CogumiConfig:
    """Serve (and route over) what the run built: the GGUF base, the modifiers' adapters, the router."""
    serve = cfg.serve
    update: dict[str, Any] = {}
    if gguf:
        update["base"] = serve.base.model_copy(update={"backend": "llamacpp", "model": gguf, "gguf_file": None,
                                                       "adapter": None, "logits_all": True})
    if adapters and not serve.adapters_dir:
        update["adapters_dir"] = adapters
    if router and not serve.routing.artifact:
        update["routing"] = serve.routing.model_copy(update={"artifact": router})
    return cfg.model_copy(update={"serve": serve.model_copy(update=update)}) if update else cfg


RUN_CONFIG = "config.yaml"  # the resolved config of the last pipeline run, in <run>/pipeline/


def config_for_run(run_path: str, overrides: list[str] | None = None, config: str | None = None) -> CogumiConfig:
    """The config that serves exactly what the run at ``run_path`` promoted (GGUF, adapters, router).

    The run's own resolved config (``<run>/pipeline/config.yaml``) supplies the serving
    settings unless ``config`` names another file; ``overrides`` apply on top.

    Raises:
        CogumiError: no such run, or the run has no promoted GGUF to serve.
    """
    from cogumi.config import load_config

    root, name = posixpath.split(run_path.rstrip("/"))
    root = root or "."
    recorded = posixpath.join(run_path.rstrip("/"), "pipeline", RUN_CONFIG)
    if config is None:
        if not os.path.isfile(recorded):
            raise CogumiError(f"{run_path} has no recorded pipeline config ({recorded})", "--run",
                              "run `cogumi pipeline` first, or pass --config with the config the run used")
        config = recorded
    cfg = load_config(config, [*(overrides or []), f"run.root={root}", f"run.name={name}"])
    from cogumi.compress.steps import GGUF_STAGE

    plan = PipelinePlan(cfg)
    if not plan._done(GGUF_STAGE):
        raise CogumiError(f"the run {run_path} has no finished compress.gguf stage, so no promoted GGUF to serve",
                          "--run", "finish the run (`cogumi pipeline`) or serve a model with `cogumi serve --config`")
    return plan.built_config()


# ---------------------------------------------------------------- the plan


class PipelinePlan:
    """The stages of one pipeline run and what they learned about each other."""

    def __init__(self, cfg: CogumiConfig):
        self.cfg = cfg
        self.run = RunDir.open(cfg.run.root, cfg.run.name)
        # when `train` is not among the stages run now, continue from the newest finished, promoted one
        self.latest_train: str | None = None if "train" in cfg.pipeline.stages else \
            next((s for s in TRAIN_STAGES if self._done(s) and self._promoted(s)), None)
        self.decision: str | None = None
        self.failures = 0
        self.serving: CogumiConfig | None = None

    # -- helpers
    def _done(self, stage: str) -> bool:
        return self.run.stage(stage).finished()

    def _built(self, stage: str, output: str) -> bool:
        """Finished with ``output`` among its outputs (a router stage can finish without a router)."""
        manifest = self.run.stage(stage).manifest()
        return manifest is not None and manifest.status == "finished" and output in manifest.outputs

    def _promoted(self, train_stage: str) -> bool:
        """Did the stage's gate promote it? True when no gate ran; False when its gate never finished (it decided
        nothing: a crashed or interrupted gate must not promote)."""
        manifest = self.run.stage(f"gate.{train_stage}").manifest()
        if manifest is None:
            return True
        return manifest.status == "finished" and bool(manifest.metrics.get("promoted", True))

    def _served_adapters(self) -> list[str]:
        """The adapters the modifiers stage promoted (rejected ones are not served)."""
        return list(self.run.stage("modifiers").finished_manifest().metrics.get("adapters") or [])

    def _student(self) -> CogumiConfig:
        """The config whose student is the current promoted model (the starting one when none was promoted)."""
        if self.latest_train is None:
            return self.cfg
        return with_student(self.cfg, trained_student(self.cfg, self.run, self.latest_train))

    def _result(self, stage: str, summary: dict[str, Any], outputs: tuple[str, ...] = ()) -> StageResult:
        return StageResult.from_summary(stage, summary, self.run, outputs)

    def _promote(self, cfg: CogumiConfig, stage: str, summary: dict[str, Any], force: bool) -> StageResult:
        """A finished training stage's result, gated against the current model: promoted or rejected."""
        from cogumi.pipeline.promotion import gate_training
        from cogumi.train.outputs import ADAPTER, MERGED

        result = self._result(stage, summary, (ADAPTER, MERGED))
        if not cfg.pipeline.gate.enabled:
            self.latest_train = stage
            result.degraded = "pipeline.gate.enabled is false: promoted without a gate"
            return result
        current = merged_dir(self.run, self.latest_train) if self.latest_train else cfg.student
        gate = gate_training(cfg, stage, result.outputs[MERGED], current, force=force or not result.skipped)
        keeping = self.latest_train or "the starting model"
        if gate["promoted"]:
            self.latest_train = stage
            result.headline = f"promoted: {gate['reason']}"[:300]
            return result
        result.skipped = result.skipped and bool(gate["skipped"])
        result.status = "rejected"
        result.degraded = f"rejected by its gate, keeping {keeping}: {gate['reason']}"
        return result

    def built_config(self) -> CogumiConfig:
        """The config that routes and serves what this run built (the parts that exist)."""
        from cogumi.compress.steps import GGUF_STAGE
        from cogumi.modifiers.stage import ADAPTERS

        return serving_config(
            self.cfg, served_gguf(self.run) if self._done(GGUF_STAGE) else None,
            output(self.run, "modifiers", ADAPTERS) if self._done("modifiers") and self._served_adapters() else None,
            output(self.run, "router", "") if self._built("router", "router.json") else None)

    # -- stage functions: (cfg, force) -> StageResult
    def curate(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.curate.stage import curate_stage

        return self._result("curate", curate_stage(cfg, force))

    def train(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.train.stage import run_train

        return self._promote(cfg, "train", run_train(train_config(cfg), force), force)

    def benchmark(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.evaluate.benchmark import STAGE, benchmark_stage

        return self._result(STAGE, benchmark_stage(self._student(), force))

    def compare(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.evaluate.compare import FAILURES, compare_stage

        result = self._result("compare", compare_stage(self._student(), force=force), (FAILURES,))
        self.decision = result.summary["results"]["decision"]["phase_1c"]
        self.failures = count_records(self.run, "compare", FAILURES)
        return result

    def gate_1b(self, cfg: CogumiConfig) -> tuple[bool, str]:
        if not cfg.pipeline.phase_1b.enabled:
            return False, "pipeline.phase_1b.enabled is false"
        if self.latest_train is None:
            return False, "no Phase 1A adapter to continue"
        if self.failures == 0:
            return False, "the comparison found no failures"
        return True, ""

    def train_1b(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.evaluate.compare import FAILURES
        from cogumi.train.stage import run_train

        assert self.latest_train is not None  # gate_1b
        out = run_train(followup_train_config(cfg, "train-1b", stage_ref("compare", FAILURES), self.latest_train,
                                              cfg.pipeline.phase_1b), force)
        return self._promote(cfg, "train-1b", out, force)

    def gate_1c(self, cfg: CogumiConfig) -> tuple[bool, str]:
        p = cfg.pipeline
        if not p.phase_1c.enabled or p.distill_when == "never":
            return False, "Phase 1C is turned off (pipeline.phase_1c / pipeline.distill_when)"
        if self.latest_train is None:
            return False, "no trained student to distil from"
        if p.distill_when == "always":
            return True, ""
        if self.decision is None:
            return False, "no comparison decision (the compare stage did not run)"
        if DECISION_RANK.get(self.decision, 0) >= WHEN_RANK[p.distill_when]:
            return True, ""
        return False, f"the comparison decided '{self.decision}' (pipeline.distill_when: {p.distill_when})"

    def distill(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.evaluate.distill_stage import DISTILLED, STAGE, distill_stage

        return self._result(STAGE, distill_stage(self._student(), force), (DISTILLED,))

    def gate_train_1c(self, cfg: CogumiConfig) -> tuple[bool, str]:
        from cogumi.evaluate.distill_stage import DISTILLED

        ok, why = self.gate_1c(cfg)
        if ok and count_records(self.run, "distill", DISTILLED) == 0:
            return False, "distillation kept no examples"
        return ok, why

    def train_1c(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.evaluate.distill_stage import DISTILLED
        from cogumi.train.stage import run_train

        assert self.latest_train is not None  # gate_1c
        out = run_train(followup_train_config(cfg, "train-1c", stage_ref("distill", DISTILLED), self.latest_train,
                                              cfg.pipeline.phase_1c), force)
        return self._promote(cfg, "train-1c", out, force)

    def compress(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.compress.pipeline import run_compress

        # one pipeline stage over the compress.<step> stages: metrics are per step, in the summary
        return self._result("compress", run_compress(compress_config(cfg, self.run, self.latest_train), force=force))

    def modifiers(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.modifiers.stage import ADAPTERS, modifiers_stage

        return self._result("modifiers", modifiers_stage(modifiers_config(cfg, self.run, self.latest_train), force),
                            (ADAPTERS,))

    def router(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.route.stage import router_stage

        # a tiny model can leave one label only: the stage then finishes without a router (recorded,
        # so an unchanged rerun skips it) and serving keeps the built-in router
        out = router_stage(self.built_config(), force, record_untrainable=True)
        out["source"] = out["source"].kind
        return self._result("router", out)

    def final_eval(self, cfg: CogumiConfig, force: bool) -> StageResult:
        from cogumi.pipeline.final_eval import final_eval_stage

        return self._result("final-eval", final_eval_stage(self.cfg.student, self.built_config(), force))

    def stages(self) -> list[PipelineStage]:
        """Every stage in order; ``serve`` is run by the command after the report, not here."""
        return [
            PipelineStage("curate", "teachers, judge, filters, dedup", self.curate),
            PipelineStage("train", "QLoRA SFT (Phase 1A)", self.train),
            PipelineStage("benchmark", "standard and code benchmarks, perplexity", self.benchmark),
            PipelineStage("compare", "judge comparison with a reference (Phase 1B)", self.compare),
            PipelineStage("train-1b", "targeted retraining on failures (Phase 1B.3)", self.train_1b, self.gate_1b),
            PipelineStage("distill", "self-consistency distillation (Phase 1C)", self.distill, self.gate_1c),
            PipelineStage("train-1c", "training on distilled answers (Phase 1C)", self.train_1c, self.gate_train_1c),
            PipelineStage("compress", "2:4 pruning, 4-bit, GGUF, zstd (Phase 2)", self.compress),
            PipelineStage("modifiers", "domain adapters (Phase 3)", self.modifiers),
            PipelineStage("router", "calibrated routing (Phase 4)", self.router),
            PipelineStage("final-eval", "starting model vs served system on held-out data", self.final_eval),
        ]


def count_records(run: RunDir, stage: str, name: str) -> int:
    """Non-blank lines of a JSONL output of a finished stage (0 only when the file is there and empty).

    Raises:
        ArtifactError: the stage finished but the file is missing or unreadable: a missing or
            broken hand-off is an error here, never "no records".
    """
    if not run.stage(stage).finished():
        raise ArtifactError(f"stage '{stage}' has not finished, so its {name} cannot be read", run.stage(stage).path,
                            f"run the '{stage}' stage first")
    path = run.stage(stage).file(name)
    try:
        with run.fs.open_input_stream(path) as f:
            return sum(1 for line in f.read().decode().splitlines() if line.strip())
    except FileNotFoundError:
        raise ArtifactError(f"stage '{stage}' finished without its output {name}", path,
                            f"rerun the '{stage}' stage (cogumi pipeline --force {stage})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"cannot read {name} of stage '{stage}' ({type(exc).__name__}: {exc})", path,
                            "check the file and its permissions (or the bucket's credentials), then rerun") from None
