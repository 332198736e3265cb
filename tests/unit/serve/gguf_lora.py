"""Write a small GGUF LoRA adapter for a llama-architecture GGUF base (test helper).

The layout is what llama.cpp's ``llama_adapter_lora_init`` expects (and what
``convert_lora_to_gguf.py`` writes): ``general.type = adapter``, ``adapter.type = lora``,
``adapter.lora.alpha``, and per target ``<tensor>.lora_a`` (numpy shape ``(r, n_in)``)
and ``<tensor>.lora_b`` (``(n_out, r)``) in F32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_gguf_lora(base_gguf: Path, out: Path, rank: int = 4, scale: float = 0.5, seed: int = 0,
                    targets: tuple[str, ...] = ("attn_q", "attn_v"), layers: int | None = None) -> Path:
    """Random LoRA deltas for ``targets`` in each block of ``base_gguf``.

    Args:
        base_gguf: the base model file (shapes and architecture are read from it).
        out: file to write.
        rank: LoRA rank.
        scale: standard deviation of the random factors (large enough to change greedy output).
        layers: only the first N blocks (default all).

    Returns:
        ``out``.
    """
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    for t in reader.tensors:
        name = t.name
        bits = name.split(".")
        if len(bits) != 4 or bits[0] != "blk" or bits[2] not in targets or bits[3] != "weight":
            continue
        if layers is not None and int(bits[1]) >= layers:
            continue
        n_in, n_out = int(t.shape[0]), int(t.shape[1])
        a = rng.normal(0, scale, size=(rank, n_in)).astype(np.float32)
        b = rng.normal(0, scale, size=(n_out, rank)).astype(np.float32)
        writer.add_tensor(f"{name}.lora_a", a)
        writer.add_tensor(f"{name}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
