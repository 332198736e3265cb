"""Phase 5 serving settings: the Ray Serve application and its OpenAI-compatible API.

The application is three deployments: ``BaseModel`` (the compressed student),
``Modifiers`` (the same base with per-domain LoRA adapters, multiplexed) and the
``Router`` ingress (FastAPI: routing, auth, rate limits, the chat page).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from cogumi.config_base import ModelConfig, Section


DOMAIN_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"


def _default_base() -> ModelConfig:
    # logits_all: the confidence cascade needs the base answer's token logprobs
    return ModelConfig(backend="llamacpp", logits_all=True, n_ctx=2048)


class DeploymentSettings(Section):
    """Replicas and resources of one Serve deployment.

    ``num_cpus`` is fractional on purpose: on a 2-core machine a router, a base and
    a modifier replica only fit together with fractions (Ray reserves CPUs per replica).
    """

    num_cpus: float = Field(0.5, gt=0, description="CPUs Ray reserves per replica (fractions allowed)")
    num_gpus: float = Field(0.0, ge=0)
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0, description="autoscaling target per replica")
    max_ongoing_requests: int = Field(16, ge=1, description="requests a replica accepts at once")
    n_threads: int | None = Field(None, ge=1, description="llama.cpp threads per replica (default: num_cpus rounded up)")

    @model_validator(mode="after")
    def _bounds(self) -> DeploymentSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class BatchingSettings(Section):
    """Continuous batching inside one llama.cpp replica (:mod:`cogumi.models.inference.llamacpp_batch`).

    On: a replica decodes up to ``slots`` requests together (one ``llama_decode`` per
    step, requests join and leave between steps). Off: one request at a time through
    llama-cpp-python (today's path). Other backends ignore it.

    Off by default: on the 2-vCPU dev VM the engine lost at concurrency 1 (in-process,
    same process and threads: 5.6 vs 34.1 tok/s unbatched, 2026-12-06) and reached only
    1.86x unbatched and 0.51x llama.cpp's C++ server at concurrency 8 (BENCHMARKS.md,
    serve-batching section). Suspected cause, not proven: the scheduler thread hands each
    token to the caller's thread, a third runnable thread beside llama.cpp's two spinning
    OpenMP threads on two cores. Turn it on where cores outnumber ``n_threads``.
    """

    enabled: bool = Field(False, description="decode many requests per step on llama.cpp replicas "
                                              "(off by default: slower at concurrency 1 on 2 cores)")
    slots: int = Field(8, ge=1, le=64, description="sequences one replica decodes together (n_seq_max)")
    n_batch: int = Field(512, ge=16, description="most tokens per llama_decode call (prompt chunks are cut to fit)")


class VllmSettings(Section):
    """GPU serving on vLLM (the optional ``gpu`` extra): the base and its modifiers as LoRA adapters of one engine.

    On, the ``BaseModel`` and ``Modifiers`` deployments run vLLM's engine over
    ``serve.base.model`` (an HF checkpoint, backend ``transformers``) with PEFT adapters;
    give those deployments ``num_gpus``. Off (default): llama.cpp / transformers as configured.
    """

    enabled: bool = Field(False, description="serve with vLLM (needs CUDA and `pip install .[gpu]`)")
    max_loras: int = Field(4, ge=1, description="LoRA adapters resident on the GPU at once (vLLM max_loras)")
    max_lora_rank: int = Field(16, ge=1)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)


class RoutingSettings(Section):
    """How a request picks base or modifier.

    ``cascade`` is the spec's post-generation route: the base answers first and a
    modifier re-answers when the base's confidence is below ``confidence_threshold``.
    ``pre`` routes from the conversation alone (no base pass), so streams start at once.
    """

    mode: Literal["cascade", "pre"] = "cascade"
    confidence_threshold: float = Field(0.8, ge=0.0, le=1.0)
    artifact: str | None = Field(None, description="router/ folder from `cogumi router` (default: built-in)")
    escalation: bool = Field(True, description="send dissatisfied follow-ups straight to a modifier")


class RateLimitSettings(Section):
    """Per-key token buckets (per router replica)."""

    requests_per_minute: int = Field(600, ge=1)
    burst: int = Field(60, ge=1, description="requests a key may send at once before waiting")


class AuthFailureSettings(Section):
    """The brake on key guessing, per client address (per router replica).

    After ``free_attempts`` wrong keys a client waits ``base_delay_s``, doubling with
    each further wrong key up to ``max_delay_s``, and gets 429 with ``Retry-After``.
    """

    free_attempts: int = Field(5, ge=0, description="wrong keys a client may send before it must wait")
    base_delay_s: float = Field(1.0, gt=0)
    max_delay_s: float = Field(300.0, gt=0)


class ServeConfig(Section):
    """Phase 5: the Ray Serve application behind an OpenAI-compatible endpoint."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth: Literal["open-local", "keys"] = Field(
        "keys", description="'keys': bearer keys required; 'open-local': no keys unless COGUMI_API_KEY is set")
    api_keys_file: str | None = Field(None, description="file with one API key per line ('#' comments)")
    model_name: str = Field("cogumi", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                            description="served name; '<name>/base' and '<name>/<domain>' force a route")
    base: ModelConfig = Field(default_factory=_default_base, description="the base model the API serves")
    adapters_dir: str | None = Field(None, description="folder of <domain>/ adapter folders (GGUF LoRA or PEFT)")
    modifiers: dict[str, str] = Field(default_factory=dict, description="domain -> adapter path (overrides dir)")
    max_adapters_per_replica: int = Field(3, ge=1, description="multiplexed adapters kept loaded per replica")
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    vllm: VllmSettings = Field(default_factory=VllmSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    auth_failures: AuthFailureSettings = Field(default_factory=AuthFailureSettings)
    default_max_tokens: int = Field(256, ge=1)
    max_tokens_limit: int = Field(1024, ge=1, description="largest max_tokens a request may ask for")
    max_request_bytes: int = Field(1_000_000, ge=1024)
    router_deployment: DeploymentSettings = Field(
        default_factory=lambda: DeploymentSettings(num_cpus=0.25, max_ongoing_requests=64),
        description="the async ingress: light, so it takes many requests at once")
    base_deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    modifier_deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    chat_page: bool = Field(True, description="serve the chat page at /")

    @model_validator(mode="after")
    def _vllm_needs_hf(self) -> ServeConfig:
        if self.vllm.enabled and self.base.backend != "transformers":
            raise ValueError("serve.vllm.enabled needs serve.base.backend 'transformers' (an HF checkpoint; "
                             "vLLM adapters are PEFT folders)")
        return self

    @model_validator(mode="after")
    def _domain_names(self) -> ServeConfig:
        for name in self.modifiers:
            if not valid_domain(name):
                raise ValueError(f"modifier name '{name}' must match [a-z0-9][a-z0-9_-]* (no '/', no '..')")
        return self


def valid_domain(name: str) -> bool:
    """Whether ``name`` is a safe modifier (domain) name: no path parts, 1-64 chars."""
    return re.fullmatch(DOMAIN_PATTERN, name) is not None
