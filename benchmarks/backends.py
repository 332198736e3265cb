"""Decode speed of llama.cpp vs transformers on the embedded SmolLM2-135M-Instruct.

Both backends answer the same prompts greedily, interleaved round by round so that
machine noise hits both alike; decode tokens/s = completion tokens / wall time of
the call (short prompts, so prompt processing is a small share). Prints JSON with
per-backend medians and the llama.cpp / transformers ratio (goal >= 3.5x).

    python benchmarks/backends.py [--rounds 3] [--max-tokens 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from cogumi.config import ModelConfig
from cogumi.models.inference import SamplingParams, make_backend

PROMPTS = ["Write a short story about a lighthouse keeper.", "Explain how a hash map works.",
           "Describe the water cycle in detail.", "Give me ten ideas for a birthday party."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    backends = {
        "llamacpp": make_backend(ModelConfig(backend="llamacpp", n_threads=args.threads)),
        "transformers": make_backend(ModelConfig(backend="transformers", device="cpu", dtype="float32")),
    }
    params = SamplingParams(max_tokens=args.max_tokens)
    for b in backends.values():  # warm-up
        b.chat([{"role": "user", "content": "Hi"}], SamplingParams(max_tokens=8))
    speeds: dict[str, list[float]] = {name: [] for name in backends}
    tokens: dict[str, int] = {name: 0 for name in backends}
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            for name, b in backends.items():
                gen = b.chat([{"role": "user", "content": prompt}], params)
                speeds[name].append(gen.tokens_per_s)
                tokens[name] += gen.usage.completion_tokens
    med = {name: statistics.median(v) for name, v in speeds.items()}
    result = {
        "benchmark": "decode tokens/s, embedded SmolLM2-135M-Instruct (GGUF Q4_1 vs transformers fp32 dequantised)",
        "machine": f"{platform.node()} {platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "calls_per_backend": len(speeds["llamacpp"]), "max_tokens": args.max_tokens,
        "completion_tokens": tokens,
        "median_tokens_per_s": {k: round(v, 2) for k, v in med.items()},
        "ratio_llamacpp_over_transformers": round(med["llamacpp"] / med["transformers"], 2),
    }
    print(json.dumps(result, indent=2))
    for b in backends.values():
        b.close()


if __name__ == "__main__":
    main()
