"""One-prompt generation: a pure function plus a thin Ray adapter (for `ray job submit`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cogumi.config import ModelConfig, SamplingConfig
from cogumi.models.inference import SamplingParams, make_backend
from cogumi.raycluster import connect


@dataclass
class GenerateRequest:
    """What to generate and with which model."""

    model: ModelConfig
    sampling: SamplingConfig
    prompt: str
    system: str | None = None
    raw: bool = False


def run_generate(req: GenerateRequest) -> dict[str, Any]:
    """Load the backend, answer the prompt, return the generation as a JSON-ready dict."""
    backend = make_backend(req.model)
    try:
        params = SamplingParams(max_tokens=req.sampling.max_tokens, temperature=req.sampling.temperature,
                                top_p=req.sampling.top_p, seed=req.sampling.seed)
        if req.raw:
            gen = backend.complete(req.prompt, params)
        else:
            messages = ([{"role": "system", "content": req.system}] if req.system else [])
            gen = backend.chat(messages + [{"role": "user", "content": req.prompt}], params)
    finally:
        backend.close()
    return gen.as_dict() | {"tokens_per_s": round(gen.tokens_per_s, 2)}


def run_generate_on_ray(req: GenerateRequest, num_cpus: float = 1.0) -> dict[str, Any]:
    """Run :func:`run_generate` as a Ray task (joins ``RAY_ADDRESS`` or starts a local Ray)."""
    import ray

    connect(log_to_driver=False)
    num_gpus = 1 if req.model.device == "cuda" else 0
    task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(run_generate)
    return ray.get(task.remote(req))
