"""Evaluation settings: standard benchmarks, Phase 1B judge comparison, Phase 1C distillation.

Defaults run the bundled, project-written task files on the embedded model; the
cloud configs name the standard lm-eval tasks (``mmlu``, ``gsm8k``, ...) and a
hosted reference model instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi.config_base import ModelConfig, Section

CATEGORIES = ("math", "code", "reasoning", "knowledge", "instruction", "creative")
LOCAL_TASKS = ["cogumi_mmlu", "cogumi_gsm8k", "cogumi_hellaswag", "cogumi_bbh", "cogumi_truthfulqa"]


class RayConfig(Section):
    """How model calls are spread over Ray Data (actors hold one backend each)."""

    enabled: bool = Field(True, description="False = run every call in this process")
    address: str | None = Field(None, description="Ray cluster; None = RAY_ADDRESS or a local Ray")
    batch_size: int = Field(4, ge=1, description="rows per actor call")
    local_workers: int = Field(1, ge=1, description="actors holding the local (student) model")
    local_num_cpus: float = Field(1.0, ge=0.0, description="CPUs per local-model actor")
    local_num_gpus: float = Field(0.0, ge=0.0, description="GPUs per local-model actor")
    remote_workers: int = Field(1, ge=1, description="actors calling HTTP endpoints (reference, judge)")
    remote_num_cpus: float = Field(0.25, ge=0.0, description="CPUs per HTTP actor")
    threads: int = Field(4, ge=1, description="requests in flight per HTTP actor")


class HarnessConfig(Section):
    """lm-evaluation-harness run."""

    tasks: list[str] = Field(default_factory=lambda: list(LOCAL_TASKS),
                             description="lm-eval task or group names (bundled: cogumi_*; standard: mmlu, gsm8k, ...)")
    include_paths: list[str] = Field(default_factory=list, description="extra folders of task YAMLs")
    limit: int | None = Field(None, ge=1, description="items per task (None = all)")
    num_fewshot: int | None = Field(None, ge=0, description="None = each task's default")
    batch_size: int = Field(4, ge=1)
    apply_chat_template: bool = Field(False, description="wrap prompts in the model's chat template")
    max_gen_toks: int | None = Field(None, ge=1, description="cap generated tokens of generate-until tasks")
    system_instruction: str | None = Field(None, description="system message (with apply_chat_template)")
    max_length: int | None = Field(None, ge=16, description="context cap (None = model.n_ctx)")
    endpoint_completions: bool = Field(
        False, description="openai backend: also run loglikelihood tasks through /v1/completions "
                           "(needs echo+logprobs, e.g. vLLM or llama.cpp server, and 'tokenizer')")
    tokenizer: str | None = Field(None, description="HF tokenizer of an endpoint model (endpoint_completions)")


class CodeConfig(Section):
    """Code benchmarks: pass@1 with sandboxed execution."""

    suites: list[Literal["humaneval", "mbpp"]] = ["humaneval", "mbpp"]  # pydantic copies defaults per instance
    limit: int | None = Field(None, ge=1, description="problems per suite (None = all)")
    mbpp_path: str | None = Field(None, description="MBPP-style JSONL (None = the bundled set)")
    prompt_style: Literal["chat", "completion"] = Field(
        "chat", description="chat = ask for the function in a code block; completion = continue the stub")
    max_tokens: int = Field(256, ge=8)
    timeout_s: float = Field(5.0, gt=0.0, description="wall clock per program")
    memory_mb: int = Field(512, ge=64, description="address-space cap per program")
    workers: int = Field(2, ge=1, description="programs executed at the same time")


SandboxLayer = Literal["user", "pid", "net", "mount", "limits", "guard"]
FULL_ISOLATION: tuple[str, ...] = ("user", "pid", "net", "mount", "limits")


class SandboxConfig(Section):
    """Code-execution sandbox for code benchmarks, Phase 1C and modifier verification.

    Layers: ``user`` (no privileges of Cogumi's user), ``pid`` (own pid namespace, all killed
    at the end), ``net`` (empty network namespace), ``mount`` (read-only system view plus a
    private writable folder), ``limits`` (rlimits set outside the interpreter), ``guard``
    (in-interpreter audit hook, defence in depth only).
    """

    require: Literal["any", "full"] | list[SandboxLayer] = Field(
        "any", description="'any' = run with whatever layers this machine allows (the manifest says which); "
                           "'full' = refuse to run without user, pid, net, mount and limits; or a list of layers")
    isolation: Literal["auto", "guard-only"] = Field(
        "auto", description="auto = bubblewrap where available; guard-only = the old in-interpreter path "
                            "(plain subprocess + audit hook), for comparisons only")
    guard: bool = Field(True, description="also install the in-interpreter audit hook (defence in depth)")

    def required_layers(self) -> tuple[str, ...]:
        """The layers ``require`` asks for, as a tuple."""
        if self.require == "any":
            return ()
        return FULL_ISOLATION if self.require == "full" else tuple(self.require)


class PerplexityConfig(Section):
    """Sliding-window perplexity and fixed-prompt samples."""

    text_path: str | None = Field(None, description="held-out text file (None = the bundled text)")
    max_length: int = Field(256, ge=16, description="window length in tokens")
    stride: int = Field(128, ge=1, description="tokens the window advances")
    max_tokens: int | None = Field(None, ge=1, description="score at most this many tokens of the text")
    prompts_path: str | None = Field(None, description="JSONL of {'prompt'} (None = the bundled prompts)")
    generation_tokens: int = Field(48, ge=1)


class BenchmarkConfig(Section):
    """``cogumi benchmark``: what runs and which saved run it is compared with."""

    parts: list[Literal["harness", "code", "perplexity", "generations"]] = [
        "harness", "code", "perplexity", "generations"]  # pydantic copies defaults per instance
    harness: HarnessConfig = Field(default_factory=HarnessConfig)
    code: CodeConfig = Field(default_factory=CodeConfig)
    perplexity: PerplexityConfig = Field(default_factory=PerplexityConfig)
    baseline: str | None = Field(None, description="results JSON to diff against (None = the saved baseline)")


class Price(Section):
    """USD per million tokens."""

    input: float = Field(0.0, ge=0.0)
    output: float = Field(0.0, ge=0.0)


class CompareConfig(Section):
    """Phase 1B: answers from the student and a reference model, a blind judge, the decision."""

    prompts: str = Field("bundled",
                         description="'bundled', a JSONL/JSON/Parquet path, 'humaneval' or 'hf:NAME[:split]'")
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES))
    samples_per_category: int = Field(50, ge=1, description="prompts per category (spec: 50-200)")
    reference: ModelConfig | None = Field(None, description="reference model; None = the root 'judge' model")
    answer_tokens: int = Field(256, ge=8, description="max tokens of each answer")
    judge_tokens: int = Field(160, ge=32, description="max tokens of each verdict")
    margin: float = Field(0.5, ge=0.0, description="win/loss needs the average to differ by more than this")
    swap_positions: bool = Field(True, description="judge twice with the answers' order swapped")
    parse_attempts: int = Field(2, ge=1, description="asks per pass when the verdict does not parse")
    attempts: int = Field(3, ge=1, description="tries per model call (errors, timeouts) before the item is an error")
    structured_output: bool = Field(True, description="send a JSON-schema response_format to the judge")
    system_prompt: str = "You are a helpful, accurate assistant. Answer completely and clearly."
    skip_1c_at: float = Field(90.0, ge=0.0, le=100.0, description="score (%) at or above which Phase 1C is skipped")
    require_1c_below: float = Field(85.0, ge=0.0, le=100.0, description="score (%) below which Phase 1C is required")
    prices: dict[str, Price] = Field(default_factory=dict,
                                     description="per served model name; default: the registry's price, else 0")

    @model_validator(mode="after")
    def _thresholds(self) -> CompareConfig:
        if self.require_1c_below > self.skip_1c_at:
            raise ValueError("compare.require_1c_below must not exceed compare.skip_1c_at")
        return self


class CategoryStrategy(Section):
    """One category's generation settings (the spec's CATEGORY_SETTINGS) and how outputs are kept."""

    generate_temp: float = Field(0.0, ge=0.0, le=2.0)
    generate_sample: bool = Field(False, description="False = greedy, one answer")
    train_temp: float = Field(0.0, ge=0.0, le=2.0, description="the inference temperature training aims at")
    keep: Literal["verified", "vote", "diverse"] = Field(
        "verified", description="verified = greedy, checked against ground truth where present; "
                                "vote = majority answer at >= min_agreement; diverse = up to max_diverse distinct")
    rationale: str = ""


def _spec_strategies() -> dict[str, CategoryStrategy]:
    s = CategoryStrategy
    return {
        "math": s(rationale="Math needs exact answers"),
        "code": s(rationale="Code must be correct"),
        "reasoning": s(generate_temp=0.1, generate_sample=True, keep="vote",
                       rationale="Slight exploration, train deterministically"),
        "creative": s(generate_temp=0.7, generate_sample=True, train_temp=0.3, keep="diverse",
                      rationale="Generate creative, train patterns consistently"),
        "knowledge": s(rationale="Factual precision"),
        "instruction": s(generate_temp=0.2, generate_sample=True, keep="vote",
                         rationale="Precise with slight variation"),
    }


class DistillConfig(Section):
    """Phase 1C: category-specific self-consistency distillation with the local model."""

    prompts: str = Field("bundled-math", description="'bundled-math', 'bundled' (six categories) or a path")
    split: Literal["train", "heldout", "all"] = Field("train", description="rows of a split-tagged set to use")
    limit: int | None = Field(None, ge=1, description="prompts per category (None = all)")
    categories: dict[str, CategoryStrategy] = Field(default_factory=_spec_strategies)
    n_samples: int = Field(10, ge=1, description="samples per prompt for vote/diverse categories")
    min_agreement: float = Field(0.6, gt=0.0, le=1.0)
    max_diverse: int = Field(3, ge=1)
    diversity_threshold: float = Field(0.6, gt=0.0, le=1.0, description="max 3-gram Jaccard between kept outputs")
    keep_unverified: bool = Field(True, description="keep greedy outputs that have no ground truth to check")
    verify_votes: bool = Field(True, description="drop a voted answer that contradicts the ground truth")
    max_tokens: int = Field(256, ge=8)
    system_prompt: str = "You are a helpful, accurate assistant. Answer completely and clearly."
    code_timeout_s: float = Field(5.0, gt=0.0)
    seed: int = 0


class EvaluateConfig(Section):
    """Benchmarks (lm-eval, code, perplexity), Phase 1B comparison, Phase 1C distillation, code sandbox."""

    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
