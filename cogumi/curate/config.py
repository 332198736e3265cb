"""Phase 0 curation settings: prompt sources, teachers, judge, rule filters, dedup, Ray.

Defaults follow the spec (judge keeps >= 7/10, 150-2048 tokens, English only,
MinHash 128 permutations on character 3-grams at Jaccard 0.8); the embedded
default in ``configs/local.yaml`` shrinks limits so the whole phase runs on a CPU.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi.config_base import ModelConfig, Section
from cogumi.endpoints.config import BatchConfig, EndpointMode, RetryConfig

SOURCE_NAMES = ("alpaca-gpt4", "anthropic-hh", "codealpaca", "dolly", "metamathqa", "openorca")


class CategorySettings(Section):
    """Generation settings of one domain (the spec's CATEGORY_SETTINGS table)."""

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="generate_temp")
    do_sample: bool = Field(False, description="generate_sample; False = greedy")
    max_tokens: int = Field(1024, ge=1, description="answer length cap")


def _spec_categories() -> dict[str, CategorySettings]:
    return {
        "math": CategorySettings(temperature=0.0, do_sample=False),
        "code": CategorySettings(temperature=0.0, do_sample=False),
        "reasoning": CategorySettings(temperature=0.1, do_sample=True),
        "creative": CategorySettings(temperature=0.7, do_sample=True),
        "science": CategorySettings(temperature=0.0, do_sample=False),  # spec: 'knowledge'
        "conversation": CategorySettings(temperature=0.2, do_sample=True),  # spec: 'instruction'
    }


class TeacherConfig(Section):
    """One OpenAI-compatible (or local) teacher with its price, limits and share of work."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    model: ModelConfig = Field(default_factory=ModelConfig)
    price_in_per_mtok: float = Field(0.0, ge=0.0, description="USD per million input tokens")
    price_out_per_mtok: float = Field(0.0, ge=0.0, description="USD per million output tokens")
    rpm: int = Field(60, ge=1, description="requests per minute, whole cluster")
    tpm: int = Field(100_000, ge=1, description="tokens per minute, whole cluster")
    domains: list[str] = Field(default_factory=list, description="empty = all domains")
    difficulties: list[str] = Field(default_factory=list, description="empty = all")
    share: float = Field(1.0, gt=0.0, description="relative share of the prompts it is eligible for")
    concurrency: int = Field(4, ge=1, description="requests in flight per worker (HTTP teachers)")
    mode: EndpointMode = Field("online", description="online: one call per prompt; batch: the provider's batch "
                                                     "API (OpenAI Batch shape), at its batch price")
    batch: BatchConfig = Field(default_factory=BatchConfig, description="batch files, polling, rounds, prices")

    @model_validator(mode="after")
    def _batch_needs_http(self) -> TeacherConfig:
        if self.mode == "batch" and self.model.backend != "openai":
            raise ValueError(f"teacher '{self.name}': mode batch needs an OpenAI-compatible endpoint "
                             f"(model.backend openai), got '{self.model.backend}'")
        return self


class JudgeConfig(Section):
    """The LLM judge: the spec's rubric, scored out of 10."""

    model: ModelConfig | None = Field(None, description="judge model; None = the root 'judge' model")
    price_in_per_mtok: float = Field(0.0, ge=0.0)
    price_out_per_mtok: float = Field(0.0, ge=0.0)
    rpm: int = Field(600, ge=1)
    tpm: int = Field(1_000_000, ge=1)
    concurrency: int = Field(4, ge=1)
    max_tokens: int = Field(96, ge=16, description="verdict length cap")
    parse_attempts: int = Field(2, ge=1, description="asks per row when the verdict does not parse")
    structured_output: bool = Field(True, description="send a JSON schema response_format")
    keep_unscored: bool = Field(True, description="keep rows whose verdict never parsed (quality_score null)")
    enabled: bool = Field(True, description="False = skip the judge (every row unscored)")
    mode: EndpointMode = Field("online", description="batch: first verdicts through the provider's batch API "
                                                     "(re-asks of unparseable verdicts go online)")
    batch: BatchConfig = Field(default_factory=BatchConfig)


class FilterConfig(Section):
    """Rule-based filters applied to every generated example."""

    min_tokens: int = Field(150, ge=0, description="response+instruction tokens, student tokenizer")
    max_tokens: int = Field(2048, ge=1)
    language: str | None = Field("en", description="keep only this ISO-639-1 language; None = off")
    min_language_confidence: float = Field(0.5, ge=0.0, le=1.0)
    pii: Literal["redact", "drop", "off"] = Field("redact", description="what to do with PII")
    drop_truncated: bool = Field(True, description="drop answers cut by max_tokens")

    @model_validator(mode="after")
    def _range(self) -> FilterConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError("filters.min_tokens must not exceed filters.max_tokens")
        return self


class DedupConfig(Section):
    """Exact then MinHash-LSH near-duplicate removal (spec appendix)."""

    enabled: bool = True
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard similarity of 3-gram sets")
    num_perm: int = Field(128, ge=16, le=1024)
    ngram: int = Field(3, ge=1, le=8, description="character n-gram size")
    recall_at_threshold: float = Field(0.98, gt=0.0, lt=1.0,
                                       description="bands/rows are chosen so a pair at the threshold "
                                                   "becomes a candidate at least this often")
    fields: list[str] = Field(default_factory=lambda: ["instruction", "response"])
    seed: int = 1


class RayDataConfig(Section):
    """How the Ray Data operators are sized."""

    address: str | None = Field(None, description="Ray cluster address; None = RAY_ADDRESS or local")
    batch_size: int = Field(16, ge=1)
    teacher_workers: int = Field(1, ge=1, description="actors per teacher stage")
    judge_workers: int = Field(1, ge=1)
    read_num_cpus: float = Field(0.25, ge=0.0, description="CPUs per read task")
    teacher_num_cpus: float = Field(0.5, ge=0.0, description="CPUs per teacher actor (HTTP teachers need little)")
    judge_num_cpus: float = Field(0.5, ge=0.0)
    filter_num_cpus: float = Field(0.25, ge=0.0, description="CPUs per filter actor and dedup task")
    actor_max_restarts: int = Field(-1, ge=-1, description="restarts of a teacher/filter/judge actor whose process "
                                    "or node dies (its batch is retried on the new one); -1 = unlimited, 0 = fail")


class CurateConfig(Section):
    """Phase 0: prompts, teachers, judge, rule filters, dedup."""

    prompts: str = Field("embedded", description="'embedded' seed set, a JSONL/Parquet path or 'hf:NAME'")
    source_format: Literal["auto", "plain", "alpaca-gpt4", "anthropic-hh", "codealpaca", "dolly",
                           "metamathqa", "openorca"] = Field(
        "auto", description="field mapping of the prompt source; auto = detect from columns")
    hf_split: str = Field("train", description="split for hf: sources")
    hf_config: str | None = Field(None, description="dataset config name for hf: sources")
    limit: int | None = Field(None, ge=1, description="use at most this many prompts")
    teachers: list[TeacherConfig] = Field(default_factory=lambda: [TeacherConfig(name="embedded")])
    categories: dict[str, CategorySettings] = Field(default_factory=_spec_categories)
    max_new_tokens: int | None = Field(None, ge=1, description="caps every category's max_tokens (small runs)")
    seed: int = Field(0, description="sampling seed sent to teachers (part of the cache key)")
    system_prompt: str = "You are a helpful, accurate assistant. Answer completely and clearly."
    min_judge_score: float = Field(7.0, ge=0.0, le=10.0, description="keep rows scoring at least this")
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    rate_headroom: float = Field(0.98, gt=0.0, le=1.0,
                                 description="fraction of every RPM/TPM cap the limiter books: requests leave "
                                             "evenly spaced but reach the server with jitter, so booking 100 % "
                                             "lets a minute there hold one request over the cap")
    ray: RayDataConfig = Field(default_factory=RayDataConfig)
    cache: str | None = Field(None, description="response cache folder/URI; None = <run root>/cache/responses")
    write_jsonl: bool = Field(True, description="also write curated.jsonl in the spec's nested form")

    def rate_limits(self) -> dict[str, tuple[float, float]]:
        """What the cluster's limiter books per key (teacher names and ``judge``): (rpm, tpm) x headroom."""
        caps = {t.name: (t.rpm, t.tpm) for t in self.teachers} | {"judge": (self.judge.rpm, self.judge.tpm)}
        return {k: (rpm * self.rate_headroom, tpm * self.rate_headroom) for k, (rpm, tpm) in caps.items()}

    @model_validator(mode="after")
    def _teachers(self) -> CurateConfig:
        if not self.teachers:
            raise ValueError("curate.teachers needs at least one teacher")
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"curate.teachers names must be unique, got {names}")
        return self
