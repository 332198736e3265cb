"""PEFT LoRA -> GGUF LoRA: llama.cpp applies it the way PEFT does."""

from __future__ import annotations

import json

import pytest

from cogumi.compress.errors import CompressError
from cogumi.compress.gguf_check import compare_with_hf
from cogumi.compress.lora_gguf import export_lora_gguf

PROMPTS = ["The capital of France is Paris, and the river", "def add(a, b):\n    return a + b\n"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _adapter(tiny_llama_dir, out, **lora_kwargs):
    """A PEFT adapter on the tiny Llama with random, non-zero A and B (a trained adapter's shape)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    torch.manual_seed(1)
    kwargs = {"r": 8, "lora_alpha": 16, "target_modules": TARGETS, "init_lora_weights": False} | lora_kwargs
    model = get_peft_model(base, LoraConfig(**kwargs))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.save_pretrained(out)
    return model.eval()


@pytest.fixture(scope="module")
def lora(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "adapter"
    return _adapter(tiny_llama_dir, out), out


def test_gguf_lora_changes_llama_cpp_output_the_way_peft_does(lora, tiny_llama_dir, tiny_f16_gguf, tiny_hf):
    peft_model, adapter_dir = lora
    exported = export_lora_gguf(adapter_dir, tiny_llama_dir, adapter_dir.parent / "adapter.gguf")
    assert exported.n_pairs == 14 and exported.alpha == 16.0 and exported.rank == 8
    tok = tiny_hf[1]
    with_lora = compare_with_hf(tiny_f16_gguf, peft_model, tok, PROMPTS, 6, 1e-3, 0.95, lora_path=str(exported.path))
    assert with_lora.passed and with_lora.mean_kl < 1e-4  # llama.cpp + GGUF LoRA == transformers + PEFT
    with peft_model.disable_adapter():  # and the adapter really changes the model
        against_base = compare_with_hf(tiny_f16_gguf, peft_model, tok, PROMPTS, 6, 1e-3, 0.95,
                                       lora_path=str(exported.path))
    assert not against_base.passed and against_base.mean_kl > 100 * with_lora.mean_kl


def test_gguf_lora_metadata(lora, tiny_llama_dir):
    from gguf import GGUFReader

    _, adapter_dir = lora
    path = export_lora_gguf(adapter_dir, tiny_llama_dir, adapter_dir.parent / "meta.gguf").path
    reader = GGUFReader(path)
    fields = {k: f.contents() for k, f in reader.fields.items()}
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == pytest.approx(16.0) and fields["general.architecture"] == "llama"
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    assert shapes["blk.0.attn_q.weight.lora_a"] == (64, 8)  # GGUF order: (in, r)
    assert shapes["blk.0.attn_q.weight.lora_b"] == (8, 64)  # (r, out)


def test_rslora_keeps_its_scale(tiny_llama_dir, tmp_path, tiny_f16_gguf, tiny_hf):
    peft_model = _adapter(tiny_llama_dir, tmp_path / "rs", use_rslora=True)
    exported = export_lora_gguf(tmp_path / "rs", tiny_llama_dir, tmp_path / "rs.gguf")
    assert exported.alpha == pytest.approx(16 * 8 ** 0.5)
    rt = compare_with_hf(tiny_f16_gguf, peft_model, tiny_hf[1], PROMPTS[:1], 4, 1e-3, 0.95,
                         lora_path=str(exported.path))
    assert rt.passed


@pytest.mark.parametrize("change,match", [
    ({"use_dora": True}, "DoRA"),
    ({"alpha_pattern": {"q_proj": 4}}, "alpha_pattern"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save|full modules"),
    ({"peft_type": "IA3"}, "not LoRA"),
])
def test_unsupported_adapters_are_refused(lora, tiny_llama_dir, tmp_path, change, match):
    import shutil

    _, adapter_dir = lora
    bad = tmp_path / "bad"
    shutil.copytree(adapter_dir, bad)
    cfg = json.loads((bad / "adapter_config.json").read_text()) | change
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CompressError, match=match) as err:
        export_lora_gguf(bad, tiny_llama_dir, tmp_path / "bad.gguf")
    assert str(bad) in str(err.value) and not (tmp_path / "bad.gguf").exists()


def test_not_an_adapter_folder(tiny_llama_dir, tmp_path):
    with pytest.raises(CompressError, match="not a PEFT adapter"):
        export_lora_gguf(tmp_path, tiny_llama_dir, tmp_path / "x.gguf")
