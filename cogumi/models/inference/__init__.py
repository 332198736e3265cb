"""One inference interface, three backends; :func:`make_backend` picks one from a ModelConfig."""

from __future__ import annotations

from cogumi.config_base import ModelConfig
from cogumi.errors import CogumiError, ModelLoadError
from cogumi.models.inference.base import (
    Generation,
    InferenceBackend,
    Message,
    SamplingParams,
    TokenLogprob,
    Usage,
)

__all__ = ["Generation", "InferenceBackend", "Message", "SamplingParams", "TokenLogprob", "Usage",
           "make_backend"]


def make_backend(cfg: ModelConfig) -> InferenceBackend:
    """Build the backend ``cfg.backend`` for ``cfg.model``.

    - ``llamacpp``: a GGUF file (the embedded model by default), optional GGUF LoRA.
    - ``transformers``: an HF folder / hub id; a GGUF (embedded) is materialised to HF first.
    - ``openai``: ``cfg.base_url`` + served model name ``cfg.model``.
    """
    from cogumi.models.loading import hf_checkpoint, load_causal_lm, load_tokenizer, resolve_source
    from cogumi.models.resources import resolve_device

    if cfg.backend == "openai":
        from cogumi.models.inference.openai_backend import OpenAIBackend

        return OpenAIBackend(cfg.base_url or "", cfg.model, cfg.api_key_env, cfg.timeout_s, cfg.max_retries)

    device = resolve_device(cfg.device)
    if cfg.backend == "llamacpp":
        from cogumi.models.inference.llamacpp_backend import LlamaCppBackend

        src = resolve_source(cfg)
        if src.kind != "gguf":
            if src.kind == "hf-dir" and src.gguf_file:
                path = f"{src.location}/{src.gguf_file}"
            else:
                raise ModelLoadError(f"backend llamacpp needs a .gguf file, got {src.kind} '{cfg.model}'",
                                     "model", "export a GGUF first (cogumi compress) or use backend transformers")
        else:
            path = src.location
        name = "smollm2-135m-instruct" if src.embedded else None
        return LlamaCppBackend(path, cfg.n_ctx, cfg.n_threads, cfg.adapter, cfg.logits_all,
                               n_gpu_layers=-1 if device == "cuda" else 0, model_name=name)

    if cfg.backend == "transformers":
        from cogumi.models.inference.transformers_backend import TransformersBackend

        location = hf_checkpoint(cfg)
        gguf_file = cfg.gguf_file if resolve_source(cfg).kind != "gguf" else None
        tokenizer = load_tokenizer(location, gguf_file)
        model = load_causal_lm(location, device=device, dtype=cfg.dtype, gguf_file=gguf_file,
                               adapter=cfg.adapter)
        name = "smollm2-135m-instruct" if cfg.model.startswith("embedded:") else cfg.model
        return TransformersBackend(model, tokenizer, name)
    raise CogumiError(f"unknown backend '{cfg.backend}'", "model.backend", "use llamacpp, transformers or openai")
