"""Foundation paths that need CUDA (skipped without it)."""

from __future__ import annotations

import pytest

from cogumi.config import ModelConfig
from cogumi.models.inference import SamplingParams, make_backend
from cogumi.models.loading import load_causal_lm
from cogumi.models.resources import detect_local

pytestmark = pytest.mark.gpu


def test_cuda_is_detected_with_memory():
    node = detect_local()
    assert node.best_device == "cuda" and node.accelerators[0].total_gb > 1


def test_transformers_backend_on_cuda_matches_cpu_greedy(embedded_hf_dir):
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    gpu = make_backend(ModelConfig(backend="transformers", device="cuda", dtype="float32"))
    cpu = make_backend(ModelConfig(backend="transformers", device="cpu", dtype="float32"))
    p = SamplingParams(max_tokens=16)
    assert gpu.chat(msgs, p).text == cpu.chat(msgs, p).text


def test_nf4_loads_on_cuda(tiny_llama_dir):
    import bitsandbytes as bnb

    model = load_causal_lm(str(tiny_llama_dir), device="cuda", quantization="nf4")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
