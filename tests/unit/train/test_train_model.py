"""Loading the student for training: NF4 + LoRA, what runs where, merging."""

from __future__ import annotations

import pytest
import torch

from cogumi.errors import CogumiError
from cogumi.train.config import TrainConfig
from cogumi.train.model import (
    attach_lora,
    attention_impl,
    choose_optimizer,
    load_base,
    merge_adapter,
)


def test_optimizer_choice_says_what_really_runs():
    assert choose_optimizer(TrainConfig(), "cuda:0") == ("paged_adamw_8bit", "paged_adamw_8bit")
    name, note = choose_optimizer(TrainConfig(), "cpu")
    assert name == "adamw_8bit" and "paged" not in name
    name, note = choose_optimizer(TrainConfig(optimizer="paged_adamw_8bit"), "cpu")
    assert name == "adamw_8bit" and "paged optimizers need CUDA" in note
    assert choose_optimizer(TrainConfig(optimizer="adamw_torch"), "cpu")[0] == "adamw_torch"


def test_attention_on_cpu_is_sdpa_with_position_id_packing():
    impl, note = attention_impl("cpu")
    assert impl == "sdpa" and "position_ids" in note


def test_nf4_base_with_lora_on_all_projections(tiny_llama_dir):
    cfg = TrainConfig(lora={"r": 4, "alpha": 8})
    model = attach_lora(load_base(str(tiny_llama_dir), qlora=True, device="cpu", dtype=torch.float32), cfg)
    import bitsandbytes as bnb

    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert n4 == 2 * 7  # 2 layers x 7 projections, all 4-bit
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == set(cfg.lora.target_modules)


def test_unknown_target_module_is_a_clear_error(tiny_llama_dir):
    base = load_base(str(tiny_llama_dir), qlora=False, device="cpu", dtype=torch.float32)
    with pytest.raises(CogumiError, match="do not exist in this model"):
        attach_lora(base, TrainConfig(lora={"target_modules": ["qkv"]}))


def test_gradients_reach_early_layers_after_an_evaluation(tiny_llama_dir):
    """bitsandbytes repacks NF4 weights for CPU inference in eval mode; training must stay trainable."""
    torch.manual_seed(0)
    model = attach_lora(load_base(str(tiny_llama_dir), qlora=True, device="cpu", dtype=torch.float32),
                        TrainConfig(lora={"r": 4}, gradient_checkpointing=False))
    x = torch.randint(0, 1000, (1, 16))
    model.eval()
    with torch.no_grad():
        model(input_ids=x)
    model.train()
    model(input_ids=x, labels=x).loss.backward()
    grad = next(p.grad for n, p in model.named_parameters() if "layers.0.self_attn.q_proj.lora_B" in n)
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.slow
def test_embedded_checkpoint_loads_in_nf4(embedded_hf_dir):
    """The materialised SmolLM2 carries a GGUF quantization_config; NF4 loading must replace it."""
    model = load_base(str(embedded_hf_dir), qlora=True, device="cpu", dtype=torch.float32)
    assert model.config.quantization_config.quant_method == "bitsandbytes"
    assert model.config.quantization_config.bnb_4bit_quant_type == "nf4"


def test_merged_bf16_model_matches_the_adapter(tiny_llama_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = TrainConfig(lora={"r": 4, "alpha": 8, "dropout": 0.0})
    model = attach_lora(load_base(str(tiny_llama_dir), qlora=True, device="cpu", dtype=torch.float32), cfg)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)
    model.save_pretrained(tmp_path / "adapter")
    method = merge_adapter(str(tiny_llama_dir), str(tmp_path / "adapter"), str(tmp_path / "merged"), qlora=True)
    assert "dequantised" in method["merge"]
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert merged.dtype == torch.bfloat16
    assert getattr(merged.config, "quantization_config", None) is None
    x = torch.randint(0, 1000, (1, 12))
    base = load_base(str(tiny_llama_dir), qlora=True, device="cpu", dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        want = reference(x).logits.float()
        got = merged.float()(x).logits
    assert (got - want).abs().max() < 0.05  # bf16 rounding of the merged weights


def test_training_tokenizer_ends_turns_with_the_models_eos(embedded_hf_dir):
    """The materialised SmolLM2 tokenizer says eos=<|im_start|>; the model (and chat template) end on <|im_end|>."""
    from transformers import GenerationConfig

    from cogumi.train.model import load_training_tokenizer

    tok = load_training_tokenizer(str(embedded_hf_dir))
    assert tok.eos_token_id == GenerationConfig.from_pretrained(embedded_hf_dir).eos_token_id
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None
