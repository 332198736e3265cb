"""QLoRA training throughput: packed vs unpacked, and plain HF Trainer + PEFT vs Cogumi's configuration.

Runs on a realistic mix of example lengths (log-normal answers, short and long
prompts), counting only real (non-padding) tokens:

* ``--compare packing``: Cogumi's training core (:func:`cogumi.train.sft.run_sft`)
  with packing on and off, same model, batch and steps (goal on CPU: >= 1.5x).
* ``--compare baseline``: a plain ``transformers.Trainer`` + PEFT QLoRA run without
  packing (AdamW, padded batches) against Cogumi's configuration (TRL SFT,
  best-fit-decreasing packing, paged 8-bit AdamW) on the same model in the same
  process (goal on CUDA: >= 2x tokens/s).

Models: ``tiny`` (random 2-layer Llama), ``embedded`` (SmolLM2-135M), ``llama8b-random``
(Llama-3.1-8B shapes, random weights built from the config: no download), or an HF folder.

    python benchmarks/train_throughput.py --device cpu --model embedded --compare packing
    python benchmarks/train_throughput.py --device cuda --model llama8b-random --compare baseline \\
        --seq 2048 --batch 4 --steps 8 --tokenizer <dir with tokenizer.json>

Prints one JSON object (machine, settings, per-run tokens/s, peak GPU memory on CUDA, ratios).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = ("the of and to in is that for it as with was on be by this are or from at which an have not they "
         "but one all were we when there can more if out so what about into than them only other new some "
         "could time these two may then do first any my now such like our over man me even most made after "
         "also did many before must through back years where much your way well down should because each "
         "just those people how too little state good very make world still own see men work long get here "
         "between both life being under never day same another know while last might us great old year off "
         "come since against go came right used take three").split()


def length_mix(n: int, max_tokens: int, seed: int = 0) -> list[dict[str, str]]:
    """Instruction/response pairs whose lengths follow a log-normal mix (median answer ~90 words)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        q = max(4, min(int(rng.lognormvariate(3.0, 0.7)), max_tokens // 4))
        a = max(4, min(int(rng.lognormvariate(4.5, 0.9)), int(max_tokens * 0.6)))
        rows.append({"instruction": " ".join(rng.choice(WORDS) for _ in range(q)) + "?",
                     "response": " ".join(rng.choice(WORDS) for _ in range(a)) + "."})
    return rows


def model_dir(name: str, tokenizer: str | None, device: str) -> tuple[str, str]:
    """(model folder, tokenizer folder) for a model name."""
    from cogumi.models.embedded import materialise_hf

    if name in ("embedded", "tiny") or not tokenizer:
        tokenizer = tokenizer or str(materialise_hf())
    if name == "embedded":
        return tokenizer, tokenizer
    if name in ("tiny", "llama8b-random"):
        return build_random_llama(name, tokenizer, device), tokenizer
    return name, tokenizer or name


def build_random_llama(name: str, tokenizer: str, device: str) -> str:
    """Save a random-weight Llama (tiny, or Llama-3.1-8B shapes) to a temp folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer)
    if name == "tiny":
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    else:  # meta-llama/Llama-3.1-8B shapes
        cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                          rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32 if name == "tiny" else torch.bfloat16)
    try:
        with torch.device(device if device.startswith("cuda") else "cpu"):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return str(out)


class StepTimer:
    """Wall time and cumulative real tokens at every logged step (log every step)."""

    def __init__(self, key: str):
        from transformers import TrainerCallback

        self.key, self.points = key, []
        timer = self

        class _CB(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and timer.key in logs and "loss" in logs:
                    timer.points.append((time.perf_counter(), float(logs[timer.key])))

        self.callback = _CB()

    def steady(self, warmup: int) -> dict[str, Any]:
        """Tokens/s after the first ``warmup`` steps (kernel set-up and allocator warm-up excluded)."""
        if len(self.points) <= warmup + 1:
            return {}
        (t0, n0), (t1, n1) = self.points[warmup], self.points[-1]
        return {"steady_tokens_per_s": round((n1 - n0) / (t1 - t0), 1), "steady_steps": len(self.points) - 1 - warmup,
                "steady_tokens": int(n1 - n0), "steady_seconds": round(t1 - t0, 2)}


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: str) -> float | None:
    import torch

    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 1024**3, 2)
    return None


def run_cogumi(model: str, rows: list[dict], args: argparse.Namespace, packing: bool) -> dict[str, Any]:
    """Cogumi's training core with its defaults (QLoRA NF4, r=64 on 7 projections, grad checkpointing)."""
    from cogumi.train.config import TrainConfig
    from cogumi.train.sft import LocalReporter, SFTJob, run_sft

    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch, grad_accum=1, max_seq_length=args.seq,
                      packing=packing, warmup_ratio=0.0, log_steps=1, eval_prompts=[],
                      save_steps=10**6, eval_steps=10**6, lora={"r": args.rank, "alpha": 16})
    timer = StepTimer("num_tokens")  # TRL's count of real tokens (no padding is added on GPU/CPU)
    _reset_peak(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        out = run_sft(SFTJob(cfg, model, rows, [], callbacks=[timer.callback]), LocalReporter(tmp),
                      device=args.device)
    return {"tokens": out["train_tokens"], "seconds": out["train_seconds"],
            "tokens_per_s": round(out["train_tokens"] / out["train_seconds"], 1), **timer.steady(args.warmup),
            "peak_gb": _peak_gb(args.device), "method": out["method"]}


def run_plain(model: str, tokenizer: str, rows: list[dict], args: argparse.Namespace) -> dict[str, Any]:
    """A plain transformers Trainer + PEFT QLoRA run: padded batches, AdamW, no packing."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig,
                              DataCollatorForSeq2Seq, Trainer, TrainingArguments)

    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    tok = AutoTokenizer.from_pretrained(tokenizer)
    tok.pad_token = tok.pad_token or tok.eos_token
    config = AutoConfig.from_pretrained(model)
    if getattr(config, "quantization_config", None):  # a materialised GGUF checkpoint
        del config.quantization_config
    _reset_peak(args.device)
    base = AutoModelForCausalLM.from_pretrained(
        model, config=config, dtype=dtype, device_map={"": args.device},
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype))
    if not cuda:
        from cogumi.train.model import keep_4bit_trainable_on_cpu

        keep_4bit_trainable_on_cpu(base)
    base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=True,
                                           gradient_checkpointing_kwargs={"use_reentrant": False})
    peft = get_peft_model(base, LoraConfig(r=args.rank, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM",
                                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                           "up_proj", "down_proj"]))

    def encode(row: dict) -> dict:
        prompt = tok.apply_chat_template([{"role": "user", "content": row["instruction"]}],
                                         add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        full = tok.apply_chat_template([{"role": "user", "content": row["instruction"]},
                                        {"role": "assistant", "content": row["response"]}],
                                       tokenize=True, return_dict=True)["input_ids"][:args.seq]
        return {"input_ids": full, "attention_mask": [1] * len(full),
                "labels": [-100] * min(len(prompt), len(full)) + full[len(prompt):]}

    ds = Dataset.from_list([encode(r) for r in rows])
    timer = StepTimer("num_input_tokens_seen")  # attention_mask.sum(): real tokens
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            model=peft, train_dataset=ds, callbacks=[timer.callback],
            data_collator=DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100),
            args=TrainingArguments(output_dir=tmp, max_steps=args.steps, per_device_train_batch_size=args.batch,
                                   learning_rate=2e-4, lr_scheduler_type="cosine", bf16=cuda, use_cpu=not cuda,
                                   gradient_checkpointing=True,
                                   gradient_checkpointing_kwargs={"use_reentrant": False},
                                   optim="adamw_torch", report_to=[], save_strategy="no", disable_tqdm=True,
                                   logging_steps=1, include_num_input_tokens_seen="non_padding",
                                   dataloader_num_workers=0, seed=0))
        t0 = time.time()
        trainer.train()
        seconds = time.time() - t0
    tokens = int(trainer.state.num_input_tokens_seen)
    peak = _peak_gb(args.device)
    del trainer, peft, base
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            **timer.steady(args.warmup), "peak_gb": peak, "method": {"trainer": "transformers.Trainer + PEFT", "optimizer": "adamw_torch",
                                        "packing": "off (padded to the longest in batch)"}}


def machine(device: str) -> dict[str, Any]:
    """What ran the benchmark."""
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "node": platform.node()}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    for pkg in ("transformers", "trl", "peft", "bitsandbytes"):
        try:
            info[pkg] = __import__(pkg).__version__
        except ImportError:
            pass
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="embedded", help="tiny | embedded | llama8b-random | HF folder")
    p.add_argument("--tokenizer", default=None, help="folder with a chat-template tokenizer (default: embedded)")
    p.add_argument("--compare", choices=["packing", "baseline", "both"], default="packing")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--examples", type=int, default=0, help="default: enough for the packed run")
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the steady-state rate")
    args = p.parse_args()

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    model, tokenizer = model_dir(args.model, args.tokenizer, args.device)
    n = args.examples or max(64, args.steps * args.batch * max(4, args.seq // 64))
    rows = length_mix(n, args.seq)
    report: dict[str, Any] = {"benchmark": "train_throughput", "machine": machine(args.device),
                              "settings": {**vars(args), "examples": n, "model_dir": model}, "runs": {}}
    if args.compare in ("baseline", "both"):
        report["runs"]["plain_hf_peft_unpacked"] = run_plain(model, tokenizer, rows, args)
    if args.compare in ("packing", "both"):
        report["runs"]["cogumi_unpacked"] = run_cogumi(model, rows, args, packing=False)
    report["runs"]["cogumi_packed"] = run_cogumi(model, rows, args, packing=True)
    runs = report["runs"]
    packed = runs["cogumi_packed"]["tokens_per_s"]
    for name, other in (("packed_vs_unpacked", "cogumi_unpacked"), ("cogumi_vs_plain", "plain_hf_peft_unpacked")):
        if other in runs:
            report[name] = round(packed / runs[other]["tokens_per_s"], 2)
            if "steady_tokens_per_s" in runs[other] and "steady_tokens_per_s" in runs["cogumi_packed"]:
                report[name + "_steady"] = round(runs["cogumi_packed"]["steady_tokens_per_s"]
                                                 / runs[other]["steady_tokens_per_s"], 2)
    report["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2, default=str))
    if not math.isfinite(packed):
        sys.exit(1)


if __name__ == "__main__":
    main()
