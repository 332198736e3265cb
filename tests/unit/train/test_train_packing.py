"""Packed samples never attend to each other: packed and unpacked losses agree.

TRL's best-fit-decreasing packing flattens a batch into one row with restarted
``position_ids`` and no attention mask. With the KV cache off (TRL's
``compute_loss`` sets ``use_cache=False``), transformers turns the position-id
restarts into a block-diagonal causal mask for sdpa/eager; with a cache it would
not (the "leak" test shows how much that changes the logits).
"""

from __future__ import annotations

import pytest
import torch

from cogumi.train.config import TrainConfig
from cogumi.train.data import to_prompt_completion
from cogumi.train.model import attach_lora, load_base

#: relative (fp32): packed and unpacked validation losses differ by ~2e-5 relative (summation
#: order, kernel shapes). Letting packed samples attend to each other moves this model's loss by
#: ~1% (~0.1 nats), which the test also asserts, so the bound has teeth.
REL_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def sharp_llama_dir(tiny_llama_dir, tmp_path_factory):
    """The tiny Llama re-initialised with larger weights (std 0.1): confident, position-sensitive
    predictions, so any cross-sample attention shows in the loss."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    config = AutoConfig.from_pretrained(tiny_llama_dir)
    config.initializer_range = 0.1
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("sharp-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(out)
    return out


def _rows():
    texts = ["Hi.", "What is the capital of France and why is it famous?", "Name three primes.",
             "Write one sentence about the sea, the wind and the long summer evenings on the coast."]
    answers = ["Hello!", "Paris. It is famous for art, food and the Eiffel Tower.", "2, 3 and 5.",
               "The sea sang to the wind while the long evening light lay gold on the coast."]
    return [{"instruction": t, "response": a} for t, a in zip(texts, answers)]


def _eval_loss(model_dir, tmp_path, packing: bool, qlora: bool) -> tuple[float, float | None]:
    """(validation loss from the trainer, loss of the same packed batch run with a KV cache = leaking)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from cogumi.models.loading import load_tokenizer

    torch.manual_seed(0)
    cfg = TrainConfig(qlora=qlora, lora={"r": 4, "alpha": 8, "dropout": 0.0}, gradient_checkpointing=False)
    model = attach_lora(load_base(str(model_dir), qlora=qlora, device="cpu", dtype=torch.float32), cfg)
    for name, p in model.named_parameters():  # non-zero LoRA B so the adapter takes part
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(1))
    ds = Dataset.from_list([to_prompt_completion(r) for r in _rows()])
    args = SFTConfig(output_dir=str(tmp_path / f"o{packing}{qlora}"), per_device_eval_batch_size=8,
                     packing=packing, eval_packing=packing, max_length=256, report_to=[], use_cpu=True,
                     completion_only_loss=True, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, eval_dataset=ds,
                         processing_class=load_tokenizer(str(model_dir)))
    batch = next(iter(trainer.get_eval_dataloader()))
    leaking = None
    if packing:
        assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
        assert int((batch["position_ids"][0] == 0).sum()) >= len(_rows())  # several samples in one row
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True).logits
        leaking = torch.nn.functional.cross_entropy(logits[0, :-1], batch["labels"][0, 1:], ignore_index=-100).item()
    return trainer.evaluate()["eval_loss"], leaking


@pytest.mark.parametrize("qlora", [False, True], ids=["lora-fp32", "qlora-nf4"])
def test_packed_and_unpacked_validation_loss_agree(sharp_llama_dir, tmp_path, qlora):
    packed, leaking = _eval_loss(sharp_llama_dir, tmp_path, packing=True, qlora=qlora)
    unpacked, _ = _eval_loss(sharp_llama_dir, tmp_path, packing=False, qlora=qlora)
    assert abs(packed - unpacked) < REL_TOLERANCE * unpacked, (packed, unpacked)
    assert abs(leaking - unpacked) > 10 * REL_TOLERANCE * unpacked, (leaking, unpacked)


def test_restarted_positions_isolate_samples_only_without_kv_cache(tiny_llama_dir):
    model = load_base(str(tiny_llama_dir), qlora=False, device="cpu", dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 1000, (1, 9), generator=g), torch.randint(0, 1000, (1, 6), generator=g)
    packed = torch.cat([a, b], 1)
    pos = torch.cat([torch.arange(9), torch.arange(6)])[None]
    with torch.no_grad():
        alone = model(b, use_cache=False).logits
        isolated = model(packed, position_ids=pos, use_cache=False).logits[:, 9:]
        leaking = model(packed, position_ids=pos, use_cache=True).logits[:, 9:]
    assert (isolated - alone).abs().max() < 1e-4
    assert (leaking - alone).abs().max() > 1e-2  # the failure mode the test above would catch
