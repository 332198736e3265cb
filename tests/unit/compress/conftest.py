"""Fixtures shared by the compression unit tests (built once per session from ``tiny_llama_dir``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_f16_gguf(tiny_llama_dir, tmp_path_factory):
    """The tiny random Llama exported to an f16 GGUF."""
    from cogumi.compress.gguf_export import export_gguf

    out = tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf"
    export_gguf(tiny_llama_dir, out)
    return out


@pytest.fixture(scope="session")
def tiny_q5_gguf(tiny_f16_gguf):
    """The tiny f16 GGUF quantised to Q5_K_M by llama.cpp."""
    from cogumi.compress.gguf_check import quantize_gguf

    out = tiny_f16_gguf.with_name("tiny-q5_k_m.gguf")
    quantize_gguf(tiny_f16_gguf, out, "Q5_K_M")
    return out


@pytest.fixture(scope="session")
def tiny_hf(tiny_llama_dir):
    """(model, tokenizer) of the tiny Llama in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llama_dir)
