"""Phase 2 on the embedded SmolLM2-135M-Instruct: size and perplexity per step, Q5_K_M vs fp32 decode speed.

Runs the whole compression pipeline (2:4 SparseGPT -> AWQ W4A16 -> GGUF f16 ->
Q5_K_M/Q4_K_M -> zstd) on the embedded model materialised as HF, then measures
decode tokens/s of llama.cpp on the Q5_K_M file against transformers fp32 on the
input model, calls interleaved round by round so machine noise hits both alike.
Prints JSON and a Markdown section for BENCHMARKS.md; checks the issue's goals:
Q5_K_M <= 0.37x the f16 size, Q5_K_M perplexity <= +5 % vs the input.

    python benchmarks/compress.py [--run-root runs/bench] [--rounds 2] [--max-tokens 64] \
        [--no-prune] [--no-quantize] [--set compress.key=value ...]
    python benchmarks/compress.py --aligned-size   # size only, SmolLM2's shape widened to 256 multiples

SmolLM2-135M's 576-wide rows do not fit llama.cpp's 256-weight K-quant super-blocks,
so most of its tensors fall back to Q5_1/Q8_0. ``--aligned-size`` exports a random
Llama of SmolLM2's depth, vocabulary and tied embeddings but hidden 768 /
intermediate 2048 through the same exporter and quantiser and reports only the
size ratio (perplexity of random weights means nothing).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

PROMPTS = ["Explain how a hash map works.", "Write a short story about a lighthouse keeper.",
           "Describe the water cycle."]


def decode_speed(q5_path: Path, hf_dir: Path, rounds: int, max_tokens: int, threads: int) -> dict:
    """Median decode tokens/s of llama.cpp (Q5_K_M) and transformers fp32, interleaved."""
    import torch

    from cogumi.config import ModelConfig
    from cogumi.models.inference import SamplingParams, make_backend

    torch.set_num_threads(threads)
    backends = {
        "llamacpp_q5_k_m": make_backend(ModelConfig(backend="llamacpp", model=str(q5_path), n_threads=threads)),
        "transformers_fp32": make_backend(ModelConfig(backend="transformers", model=str(hf_dir), device="cpu",
                                                      dtype="float32")),
    }
    params = SamplingParams(max_tokens=max_tokens)
    for b in backends.values():
        b.chat([{"role": "user", "content": "Hi"}], SamplingParams(max_tokens=4))
    speeds: dict[str, list[float]] = {k: [] for k in backends}
    for _ in range(rounds):
        for prompt in PROMPTS:
            for name, b in backends.items():
                speeds[name].append(b.chat([{"role": "user", "content": prompt}], params).tokens_per_s)
    for b in backends.values():
        b.close()
    med = {k: round(statistics.median(v), 2) for k, v in speeds.items()}
    return {"median_tokens_per_s": med, "calls_per_backend": len(PROMPTS) * rounds,
            "ratio_q5_over_fp32": round(med["llamacpp_q5_k_m"] / med["transformers_fp32"], 2)}


def aligned_size(work: Path, threads: int) -> dict:
    """Q5_K_M / f16 size of a random 256-aligned Llama shaped like SmolLM2 (30 layers, vocab 49152, tied)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cogumi.compress.gguf_check import quantize_gguf, verify_gguf
    from cogumi.compress.gguf_export import export_gguf
    from cogumi.models.embedded import materialise_hf

    tok = AutoTokenizer.from_pretrained(materialise_hf())
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=768, intermediate_size=2048, num_hidden_layers=30,
                      num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    hf_dir = work / "aligned-hf"
    LlamaForCausalLM(cfg).save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    f16, q5 = work / "aligned-f16.gguf", work / "aligned-q5_k_m.gguf"
    export_gguf(hf_dir, f16, outtype="f16")
    types = quantize_gguf(f16, q5, "Q5_K_M", threads)
    return {"shape": "llama, hidden 768, intermediate 2048, 30 layers, 12/4 heads, vocab 49152, tied embeddings",
            "params": sum(p.numel() for p in LlamaForCausalLM(cfg).parameters()),
            "f16_bytes": f16.stat().st_size, "q5_k_m_bytes": q5.stat().st_size,
            "q5_k_m_over_f16_size": round(q5.stat().st_size / f16.stat().st_size, 4),
            "q5_k_m_tensor_types": types, "f16_tensor_types": verify_gguf(f16, "gguf")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-root", default="runs/bench")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-prune", action="store_true", help="skip 2:4 pruning")
    ap.add_argument("--no-quantize", action="store_true", help="skip AWQ W4A16 (GGUF from the input)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--aligned-size", action="store_true",
                    help="only the Q5_K_M/f16 size of a random 256-aligned Llama of SmolLM2's shape")
    args = ap.parse_args()
    if args.aligned_size:
        work = Path(args.run_root) / "aligned"
        work.mkdir(parents=True, exist_ok=True)
        out = aligned_size(work, args.threads)
        out["goal_q5_size_le_0.37x_f16"] = out["q5_k_m_over_f16_size"] <= 0.37
        print(json.dumps(out, indent=2))
        return

    from cogumi.compress.pipeline import run_compress
    from cogumi.config import load_config
    from cogumi.models.embedded import materialise_hf

    hf_dir = materialise_hf()
    name = "smollm2" + ("-noprune" if args.no_prune else "") + ("-noquant" if args.no_quantize else "")
    overrides = [f"run.root={args.run_root}", f"run.name={name}",
                 f"compress.model={hf_dir}", "compress.quantize.group_size=64", "compress.quality.on_fail=warn",
                 "compress.zstd.compare_without_dict=true", *args.overrides]
    if args.no_prune:
        overrides.append("compress.prune.enabled=false")
    if args.no_quantize:
        overrides.append("compress.quantize.enabled=false")
    cfg = load_config(None, overrides)
    t0 = time.perf_counter()
    result = run_compress(cfg, use_ray=False)
    pipeline_s = time.perf_counter() - t0
    table = json.loads((Path(result["report"]).parent / "size_table.json").read_text())
    rows = {r["artifact"]: r for r in table["rows"]}
    f16, q5 = rows["model-f16.gguf"], rows["model-q5_k_m.gguf"]
    q5_path = Path(result["run"]) / "compress.gguf" / "model-q5_k_m.gguf"
    speed = decode_speed(q5_path, hf_dir, args.rounds, args.max_tokens, args.threads)
    out = {
        "benchmark": "Phase 2 compression of the embedded SmolLM2-135M-Instruct",
        "machine": f"{platform.node()} {platform.machine()}, {args.threads} threads",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "pipeline_s": round(pipeline_s, 1),
        "rows": table["rows"],
        "methods": table["methods"],
        "q5_k_m_over_f16_size": round(q5["bytes"] / f16["bytes"], 4),
        "q5_k_m_ppl_change_vs_input": q5.get("ppl_change"),
        "q5_k_m_ppl_change_vs_f16": round(q5["ppl"] / f16["ppl"] - 1, 5),
        "goals": {"q5_size_le_0.37x_f16": q5["bytes"] / f16["bytes"] <= 0.37,
                  "q5_ppl_le_plus_5pct_vs_input": (q5.get("ppl_change") or 1.0) <= 0.05,
                  "q5_ppl_le_plus_5pct_vs_f16": q5["ppl"] / f16["ppl"] - 1 <= 0.05},
        "decode": speed,
    }
    print(json.dumps(out, indent=2))
    print()
    print(Path(result["report"]).read_text())


if __name__ == "__main__":
    main()
