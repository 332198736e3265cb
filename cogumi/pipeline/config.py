"""The ``pipeline`` section: which stages `cogumi pipeline` runs and how the follow-up trainings differ."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cogumi.config_base import Section

STAGE_NAMES = ("curate", "train", "benchmark", "compare", "train-1b", "distill", "train-1c", "compress",
               "modifiers", "router", "final-eval", "serve")


class FollowUpTraining(Section):
    """A training stage that continues the previous adapter on new data (Phase 1B or 1C).

    Everything not named here comes from the ``train`` section.
    """

    enabled: bool = True
    learning_rate: float = Field(5e-6, gt=0.0, description="spec 1B.3: 5e-6, lower to prevent forgetting")
    max_steps: int | None = Field(None, ge=1, description="overrides train.max_steps (None keeps it)")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)


class FinalEvalConfig(Section):
    """The closing comparison: the starting model against the served system on held-out items.

    Suites (see :mod:`cogumi.evaluate.heldout`): held-out text likelihood, simple-math accuracy
    and answer likelihood, code pass@1 in the sandbox and reference-solution likelihood.
    """

    text_items: int | None = Field(None, ge=1, description="held-out paragraphs (None = all)")
    math_items: int = Field(30, ge=0, description="held-out math problems (0 = skip)")
    code_items: int = Field(8, ge=0, description="held-out code problems (0 = skip)")
    math_max_tokens: int = Field(32, ge=1)
    code_max_tokens: int = Field(160, ge=1)
    n_threads: int | None = Field(None, ge=1, description="llama.cpp threads (None = the machine's cores)")

    @field_validator("text_items", "math_items", "code_items")
    @classmethod
    def _two_or_none(cls, v: int | None) -> int | None:
        if v == 1:
            raise ValueError("a 95 % interval needs at least 2 items: use 0 to skip the suite or 2 or more")
        return v


class GateConfig(Section):
    """Promotion of a trained model or an adapter against what it would replace (held-out items)."""

    enabled: bool = True
    max_text_nll_increase: float = Field(0.05, ge=0.0, description="largest allowed rise of held-out text NLL "
                                                                   "per token, relative (0.05 = +5 %, ~+5 % ppl)")
    math_items: int = Field(30, ge=0)
    code_items: int = Field(8, ge=0)


class PipelineConfig(Section):
    """`cogumi pipeline`: curate → train → benchmark/compare → 1B → 1C → compress → modifiers → router → serve."""

    stages: list[str] = Field(list(STAGE_NAMES), description="stages to run, in the pipeline's order")
    phase_1b: FollowUpTraining = Field(default_factory=FollowUpTraining,
                                       description="targeted retraining on the comparison's failures")
    phase_1c: FollowUpTraining = Field(default_factory=lambda: FollowUpTraining(learning_rate=1e-4),
                                       description="training on the self-consistency distilled answers")
    distill_when: Literal["required", "optional", "always", "never"] = Field(
        "required", description="run Phase 1C when the comparison's decision is at least this "
                                "(required: score < 85; optional: score < 90)")
    serve: bool = Field(True, description="end with the endpoint up (the CLI's --no-serve turns it off)")
    final_eval: FinalEvalConfig = Field(default_factory=FinalEvalConfig,
                                        description="starting model vs served system, the report's first table")
    gate: GateConfig = Field(default_factory=GateConfig,
                             description="training stages are promoted only when they pass this gate")

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: list[str]) -> list[str]:
        unknown = [s for s in stages if s not in STAGE_NAMES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; choose from {list(STAGE_NAMES)}")
        return stages
