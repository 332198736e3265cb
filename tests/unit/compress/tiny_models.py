"""Tiny random models of each exported architecture (with the SmolLM2 tokenizer), for compression tests."""

from __future__ import annotations

from pathlib import Path


def save_tiny(kind: str, out: Path, tokenizer_dir: Path, seed: int = 0, **overrides) -> Path:
    """Save a 2-layer random ``llama``, ``qwen2`` or ``mistral`` model (hidden 64) with the tokenizer of ``tokenizer_dir``."""
    import torch
    from transformers import (AutoTokenizer, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                              Qwen2Config, Qwen2ForCausalLM)

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    common.update(overrides)
    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
               "mistral": (MistralConfig, MistralForCausalLM)}
    config_cls, model_cls = classes[kind]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**common))
    with torch.no_grad():  # random biases (Qwen2 q/k/v) so the bias path is exercised
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.5)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def train_briefly(model_dir: Path, texts: list[str], steps: int = 40, lr: float = 3e-3) -> Path:
    """Fit a tiny model a little to ``texts`` (so pruning measurably hurts it) and save it in place."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = [torch.tensor([tok(t)["input_ids"][:128]]) for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    torch.manual_seed(0)
    model.train()
    for step in range(steps):
        batch = ids[step % len(ids)]
        loss = model(batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(model_dir)
    return model_dir
