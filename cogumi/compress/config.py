"""Phase 2 compression settings: one sub-section per step (prune, quantize, gguf, zstd, quality)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cogumi.config_base import Section

GGUF_QUANT_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q3_K_M", "Q2_K")


class CalibrationConfig(Section):
    """Calibration text for SparseGPT / AWQ / GPTQ.

    ``data`` is a ``curated.parquet`` (or JSONL with instruction/response) whose
    rows are rendered with the model's chat template; without it a small built-in
    English set is used (fine for tests, too small for a real 8B run: the spec
    asks for 2,048 diverse samples).
    """

    data: str | None = Field(None, description="curated.parquet / .jsonl (or 'stage:curate/curated.parquet'); "
                                               "None = built-in calibration set")
    num_samples: int = Field(64, ge=1, description="samples used (spec: 2048)")
    min_samples: int = Field(8, ge=1, description="fewer usable samples than this is an error")
    max_seq_length: int = Field(512, ge=16)
    seed: int = 0


class PruneConfig(Section):
    """Step 1: SparseGPT pruning through llmcompressor.

    ``mask: "2:4"`` zeroes 2 of every 4 consecutive input weights, so the sparsity of
    every pruned layer is exactly 50 %; the spec's attention 60 % / FFN 70 % split
    only applies to ``mask: unstructured``. llmcompressor stores the result dense.
    """

    enabled: bool = True
    mask: str = Field("2:4", description="'N:M' semi-structured mask or 'unstructured'")
    attention_sparsity: float = Field(0.5, gt=0.0, lt=1.0)
    mlp_sparsity: float = Field(0.5, gt=0.0, lt=1.0)
    dampening_frac: float = Field(0.01, gt=0.0)
    block_size: int = Field(128, ge=1)
    ignore: list[str] = Field(default_factory=lambda: ["re:.*lm_head"])

    @field_validator("mask", mode="before")
    @classmethod
    def _yaml_sexagesimal(cls, value: object) -> object:
        """YAML 1.1 reads an unquoted ``2:4`` as the base-60 integer 124; read it back as ``2:4``."""
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value // 60}:{value % 60}"
        return value

    @field_validator("mask")
    @classmethod
    def _mask_form(cls, value: str) -> str:
        if value != "unstructured" and not re.fullmatch(r"\d+:\d+", value):
            raise ValueError("mask must be 'N:M' (e.g. '2:4') or 'unstructured'")
        if value != "unstructured":
            n, m = (int(x) for x in value.split(":"))
            if not 0 < n < m:
                raise ValueError("mask 'N:M' needs 0 < N < M")
        return value

    @model_validator(mode="after")
    def _nm_fixes_sparsity(self) -> PruneConfig:
        if self.mask != "unstructured":
            n, m = (int(x) for x in self.mask.split(":"))
            fixed = n / m
            for name in ("attention_sparsity", "mlp_sparsity"):
                if abs(getattr(self, name) - fixed) > 1e-9:
                    raise ValueError(f"a {self.mask} mask prunes exactly {fixed:.0%} of every layer; set {name}"
                                     f" to {fixed} or use mask: unstructured for per-group sparsity")
        return self

    @property
    def nm(self) -> tuple[int, int] | None:
        """``(N, M)`` of a semi-structured mask, None when unstructured."""
        if self.mask == "unstructured":
            return None
        n, m = (int(x) for x in self.mask.split(":"))
        return n, m


class QuantizeConfig(Section):
    """Step 2: 4-bit weight quantisation (W4A16) through llmcompressor.

    On a machine without an accelerator llmcompressor's AWQ pins host memory and
    fails; ``cpu_awq: run`` runs it anyway with pinning skipped (pinning only speeds
    host-to-device copies, there is no device), ``cpu_awq: gptq`` falls back to GPTQ.
    The manifest records which method really ran.
    """

    enabled: bool = True
    method: Literal["awq", "gptq"] = "awq"
    group_size: int = Field(128, ge=8, description="weights per scale; must divide every layer's input size")
    symmetric: bool | None = Field(None, description="None = AWQ asymmetric, GPTQ symmetric (llmcompressor defaults)")
    ignore: list[str] = Field(default_factory=lambda: ["lm_head"])
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_awq: Literal["run", "gptq"] = "run"
    awq_grid: int = Field(20, ge=2, description="AWQ scale grid points per layer (llmcompressor n_grid); "
                                                "fewer = faster on CPU, coarser scales")


class GgufConfig(Section):
    """Step 3: GGUF export (f16) and llama.cpp quantisation (K-quants), plus LoRA adapters."""

    enabled: bool = True
    source: Literal["float", "quantized"] = Field(
        "float", description="which model becomes the GGUF: the latest float model (pruned, or the input when "
                             "pruning is off; K-quants re-quantise from floats) or the dequantised W4A16 model")
    outtype: Literal["f16", "f32"] = "f16"
    types: list[str] = Field(default_factory=lambda: ["Q5_K_M", "Q4_K_M"])
    tokenizer_pre: str | None = Field(None, description="llama.cpp pre-tokenizer name; None = detect")
    adapters: list[str] = Field(default_factory=list, description="PEFT LoRA adapter folders to export as GGUF LoRA")
    check_prompts: int = Field(2, ge=1, description="prompts compared token by token against the HF model")
    check_tokens: int = Field(8, ge=1, description="greedy tokens compared per prompt")
    f16_max_kl: float = Field(1e-3, gt=0, description="f16: max mean KL(HF || llama.cpp) in nats (measured ~1e-5)")
    f16_min_top1: float = Field(0.95, ge=0, le=1, description="f16: min top-1 agreement with HF")
    quant_max_kl: float = Field(0.5, gt=0, description="K-quants: max mean KL in nats (measured 0.06-0.10)")
    quant_min_top1: float = Field(0.6, ge=0, le=1, description="K-quants: min top-1 agreement with HF")
    fallback_types: list[str] = Field(
        default_factory=lambda: ["Q6_K", "Q8_0"],
        description="with quality.on_fail=fallback: types tried (in order) when no type of `types` passes the "
                    "gate; the f16 export is the last resort")
    consider_input: bool = Field(
        True, description="when the input is the student's own GGUF, unchanged (nothing trained was promoted), "
                          "that file is a candidate too: re-quantising an already quantised model can only "
                          "make it worse, so it is served when it passes and is the smallest")

    @field_validator("types", "fallback_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        out = [v.upper() for v in value]
        bad = [v for v in out if v not in GGUF_QUANT_TYPES]
        if bad:
            raise ValueError(f"unknown GGUF type(s) {bad}; choose from {', '.join(GGUF_QUANT_TYPES)}")
        return out


class ZstdConfig(Section):
    """Step 4: lossless zstd archive of one GGUF with a dictionary trained on weight samples."""

    enabled: bool = True
    target: str = Field("SERVED", description="which GGUF to archive: SERVED (the one the gguf step promoted), "
                                              "a type from gguf.types, or F16")
    level: int = Field(10, ge=1, le=22)
    dict_size: int = Field(131072, ge=1024, description="dictionary bytes (spec: 128 KB)")
    sample_size: int = Field(4096, ge=64, description="bytes per weight sample the dictionary is trained on")
    max_samples: int = Field(2000, ge=8)
    threads: int = Field(0, ge=-1, description="zstd worker threads (0 = single-threaded, -1 = all cores)")
    compare_without_dict: bool = Field(False, description="also measure the ratio without a dictionary")

    @field_validator("target")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class QualityConfig(Section):
    """Quality gate: perplexity on held-out text after every step against the uncompressed model.

    ``on_fail``: ``fallback`` rejects a failing artifact and carries on without it (a rejected
    pruning step leaves the unpruned model as the GGUF source; the served GGUF is the smallest
    type that passes, trying ``gguf.fallback_types`` and then f16); ``fail`` stops the run at the
    first failing artifact; ``warn`` keeps failing artifacts (an explicit opt-in).
    """

    eval_data: str | None = Field(None, description="held-out .txt/.jsonl/.parquet; None = built-in held-out set")
    max_ppl_increase: float = Field(0.10, ge=0.0, description="spec: +10 %")
    on_fail: Literal["fallback", "fail", "warn"] = "fallback"
    max_tokens: int = Field(2048, ge=32, description="held-out tokens scored")
    window: int = Field(256, ge=16, description="tokens per scored window")


class CompressConfig(Section):
    """Phase 2: 2:4 pruning, 4-bit AWQ/GPTQ, GGUF Q5_K_M export, zstd, each step gated on perplexity."""

    model: str | None = Field(None, description="merged HF model folder or 'stage:train/merged'; "
                                                "None = the student model")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    gguf: GgufConfig = Field(default_factory=GgufConfig)
    zstd: ZstdConfig = Field(default_factory=ZstdConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved by each step's Ray task")

    @model_validator(mode="after")
    def _zstd_target_exists(self) -> CompressConfig:
        if self.zstd.enabled and self.gguf.enabled and \
                self.zstd.target not in ("SERVED", "F16", "F32", *self.gguf.types):
            raise ValueError(f"zstd.target {self.zstd.target} is not produced; gguf.types is {self.gguf.types}")
        if self.gguf.source == "quantized" and not self.quantize.enabled:
            raise ValueError("gguf.source 'quantized' needs quantize.enabled")
        return self
