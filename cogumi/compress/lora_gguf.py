"""Export a PEFT LoRA adapter to a GGUF LoRA file that llama.cpp applies at load.

The file has ``general.type = adapter``, ``adapter.type = lora`` and
``adapter.lora.alpha``; for every adapted weight ``W`` (GGUF name ``blk.N.attn_q``...)
it holds ``<name>.weight.lora_a`` (r x in) and ``<name>.weight.lora_b`` (out x r).
llama.cpp adds ``(alpha / r) * B @ A`` to ``W``, which is PEFT's LoRA; rank-stabilised
LoRA (scale ``alpha / sqrt(r)``) is written with ``alpha * sqrt(r)`` so the product
is the same. The rows of ``B`` for q/k projections get the same rotary permutation
as the base weights (the permutation acts on output rows only).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cogumi.compress.errors import CompressError
from cogumi.compress.gguf_export import arch_spec, permute_qk, read_hparams


@dataclass
class LoraExport:
    """What :func:`export_lora_gguf` wrote."""

    path: Path
    rank: int
    alpha: float
    n_pairs: int
    targets: list[str]


def _adapter_config(adapter_dir: Path) -> dict:
    cfg_path = adapter_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise CompressError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)",
                            f"compress gguf LoRA export: {adapter_dir}",
                            "point compress.gguf.adapters at adapter folders written by training")
    return json.loads(cfg_path.read_text())


def _check_supported(cfg: dict, where: str) -> None:
    if cfg.get("peft_type", "LORA") != "LORA":
        raise CompressError(f"adapter type {cfg.get('peft_type')} is not LoRA", where, "export LoRA adapters only")
    if cfg.get("use_dora"):
        raise CompressError("DoRA adapters cannot run in llama.cpp", where, "train a plain LoRA adapter")
    if cfg.get("alpha_pattern"):
        raise CompressError("per-module lora_alpha (alpha_pattern) has no GGUF form (one alpha per file)", where,
                            "train with a single lora_alpha")
    if cfg.get("modules_to_save"):
        raise CompressError(f"the adapter saves full modules {cfg['modules_to_save']}, which GGUF LoRA cannot hold",
                            where, "train without modules_to_save")
    if cfg.get("fan_in_fan_out"):
        raise CompressError("fan_in_fan_out adapters (GPT-2 Conv1D) are not supported", where,
                            "export adapters of Llama-family models")


def _base_name(key: str) -> tuple[str, str] | None:
    """('model.layers.0.self_attn.q_proj.weight', 'A'|'B') for a PEFT tensor key."""
    for part, which in ((".lora_A.", "A"), (".lora_B.", "B")):
        if part in key:
            module = key.split(part)[0]
            for prefix in ("base_model.model.", "base_model."):
                if module.startswith(prefix):
                    module = module[len(prefix):]
                    break
            return module + ".weight", which
    return None


def export_lora_gguf(adapter_dir: str | Path, base_dir: str | Path, out_path: str | Path) -> LoraExport:
    """Write a PEFT LoRA adapter as a GGUF LoRA for the base model in ``base_dir``.

    Args:
        adapter_dir: PEFT folder (adapter_config.json + adapter_model.safetensors).
        base_dir: HF folder of the base model (only config.json is read).
        out_path: the .gguf file (replaced atomically).

    Returns:
        What was written.

    Raises:
        CompressError: not a LoRA adapter, an unsupported LoRA variant, or a target module
            with no GGUF name (e.g. embeddings or lm_head).
    """
    import gguf
    from safetensors.torch import load_file

    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    where = f"compress gguf LoRA export: {adapter_dir}"
    cfg = _adapter_config(adapter_dir)
    _check_supported(cfg, where)
    weights_file = adapter_dir / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise CompressError(f"{adapter_dir} has no adapter_model.safetensors", where, "save the adapter with PEFT")
    hparams = read_hparams(Path(base_dir))
    _, spec = arch_spec(hparams, where)
    tmap = gguf.get_tensor_name_map(spec.gguf_arch, int(hparams["num_hidden_layers"]))
    n_head = int(hparams["num_attention_heads"])
    n_kv = int(hparams.get("num_key_value_heads") or n_head)

    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in load_file(str(weights_file)).items():
        parsed = _base_name(key)
        if parsed is None:
            raise CompressError(f"adapter tensor '{key}' is not a lora_A/lora_B weight", where,
                                "export adapters that hold only LoRA matrices")
        pairs.setdefault(parsed[0], {})[parsed[1]] = tensor.float().numpy()

    r = int(cfg.get("r", 8))
    alpha = float(cfg.get("lora_alpha", r))
    if cfg.get("use_rslora"):
        alpha *= math.sqrt(r)  # llama.cpp scales by alpha/r; rsLoRA by alpha/sqrt(r)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.partial")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[spec.gguf_arch])
    targets = []
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for base_name, ab in sorted(pairs.items()):
            if set(ab) != {"A", "B"}:
                raise CompressError(f"adapter holds only lora_{''.join(ab)} for {base_name}", where,
                                    "re-save the adapter; both lora_A and lora_B are needed")
            new = tmap.get_name(base_name, try_suffixes=(".weight",))
            if new is None or new.startswith(("token_embd", "output.")):
                raise CompressError(f"LoRA on '{base_name}' cannot be written as a GGUF LoRA", where,
                                    "adapt attention/MLP projections only (not embeddings or lm_head)")
            a, b = ab["A"], ab["B"]
            if spec.permute_qk and base_name.endswith("q_proj.weight"):
                b = permute_qk(b, n_head)
            elif spec.permute_qk and base_name.endswith("k_proj.weight"):
                b = permute_qk(b, n_kv)
            writer.add_tensor(f"{new}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
            writer.add_tensor(f"{new}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
            targets.append(new)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    finally:
        if writer.fout is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return LoraExport(out_path, r, alpha, len(targets), targets)
