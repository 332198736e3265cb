"""Evaluation on CUDA: perplexity and the lm-eval harness run the HF weights on the GPU."""

from __future__ import annotations

import pytest

from cogumi.config_base import ModelConfig
from cogumi.evaluate.config import HarnessConfig, PerplexityConfig

pytestmark = pytest.mark.gpu


def test_perplexity_on_cuda_matches_cpu(tiny_llama_dir):
    from cogumi.evaluate.perplexity import perplexity

    pcfg = PerplexityConfig(max_length=64, stride=32, max_tokens=120)
    cpu = perplexity(ModelConfig(backend="transformers", model=str(tiny_llama_dir), device="cpu"), pcfg)
    gpu = perplexity(ModelConfig(backend="transformers", model=str(tiny_llama_dir), device="cuda",
                                 dtype="float32"), pcfg)
    assert "cuda" in gpu["method"] and gpu["perplexity"] == pytest.approx(cpu["perplexity"], rel=1e-3)


def test_lm_eval_harness_on_cuda(embedded_hf_dir):
    from cogumi.evaluate.harness import run_harness

    res = run_harness(ModelConfig(backend="transformers", model=str(embedded_hf_dir), device="cuda"),
                      HarnessConfig(tasks=["cogumi_mmlu", "cogumi_gsm8k"], limit=4, max_gen_toks=48))
    assert "on cuda" in res["method"]
    assert res["tasks"]["cogumi_mmlu"]["n"] == 4 and res["tasks"]["cogumi_gsm8k"]["n"] == 4
