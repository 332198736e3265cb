"""Export a Hugging Face Llama-family checkpoint to a GGUF file with the ``gguf`` package.

llama.cpp's own ``convert_hf_to_gguf.py`` ships in no wheel, so this module does
the part of it Cogumi needs: Llama (and Mistral, which llama.cpp runs as Llama)
and Qwen2. It maps tensor names with ``gguf.get_tensor_name_map``, permutes the
q/k rows of Llama-style attention into llama.cpp's rotary pairing, writes the
hyper-parameters, the tokenizer (GPT-2 style byte-level BPE with merges, or a
SentencePiece-style BPE with byte fallback) with its special tokens and chat
template. Tensors are streamed one at a time and the file is written under a
temporary name, then renamed, so a crash never leaves a GGUF that looks finished.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cogumi.compress.errors import CompressError
from cogumi.compress.gguf_vocab import write_vocab

if TYPE_CHECKING:
    import gguf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchSpec:
    """How one HF architecture maps onto a llama.cpp architecture."""

    gguf_arch: gguf.MODEL_ARCH
    permute_qk: bool


def _arch_table() -> dict[str, ArchSpec]:
    import gguf

    return {
        "LlamaForCausalLM": ArchSpec(gguf.MODEL_ARCH.LLAMA, True),
        "MistralForCausalLM": ArchSpec(gguf.MODEL_ARCH.LLAMA, True),
        "Qwen2ForCausalLM": ArchSpec(gguf.MODEL_ARCH.QWEN2, False),
    }


SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")


@dataclass
class GgufExport:
    """What :func:`export_gguf` wrote."""

    path: Path
    architecture: str
    gguf_arch: str
    n_tensors: int
    n_params: int
    tokenizer_model: str
    tokenizer_pre: str | None
    skipped: list[str] = field(default_factory=list)


def read_hparams(model_dir: Path) -> dict[str, Any]:
    """``config.json`` of an HF checkpoint.

    Raises:
        CompressError: missing or unreadable config.
    """
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise CompressError(f"{model_dir} has no config.json, so it is not an HF checkpoint", str(model_dir),
                            "point compress.model at a merged HF model folder")
    return json.loads(path.read_text())


def arch_spec(hparams: dict[str, Any], where: str) -> tuple[str, ArchSpec]:
    """The architecture name and its GGUF mapping.

    Raises:
        CompressError: the architecture has no mapping here.
    """
    archs = hparams.get("architectures") or []
    table = _arch_table()
    for name in archs:
        if name in table:
            return name, table[name]
    raise CompressError(f"architecture {archs or hparams.get('model_type')} cannot be exported to GGUF here",
                        where, f"use a model of a supported architecture ({', '.join(SUPPORTED_ARCHITECTURES)})")


def permute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k rows from HF's split-half rotary layout to llama.cpp's interleaved pairs.

    Same as ``LlamaModel.permute`` in llama.cpp's converter (``n_head`` is the number
    of key/value heads for k).
    """
    shape = weights.shape
    return (weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
            .swapaxes(1, 2).reshape(shape))


def _safetensors_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = sorted({model_dir / f for f in weight_map.values()})
    else:
        files = sorted(model_dir.glob("*.safetensors"))
    missing = [f for f in files if not f.is_file()]
    if not files or missing:
        raise CompressError(f"no complete safetensors weights in {model_dir} (missing {missing or 'all'})",
                            str(model_dir), "save the model with save_pretrained(safe_serialization=True)")
    return files


def _iter_tensors(model_dir: Path) -> Iterator[tuple[str, Any]]:
    """(name, lazy slice) for every tensor in the checkpoint's safetensors files."""
    from safetensors import safe_open

    for file in _safetensors_files(model_dir):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                yield name, (file, name)


def _load(ref: tuple[Path, str]) -> np.ndarray:
    from safetensors import safe_open

    file, name = ref
    with safe_open(str(file), framework="pt") as f:
        return f.get_tensor(name).float().numpy()


def _plan_tensors(model_dir: Path, hparams: dict[str, Any], spec: ArchSpec,
                  where: str) -> tuple[list[tuple[str, str, tuple[Path, str]]], list[str]]:
    """[(hf name, gguf name, ref)] in file order, and the HF names deliberately skipped."""
    import gguf

    n_blocks = int(hparams["num_hidden_layers"])
    tmap = gguf.get_tensor_name_map(spec.gguf_arch, n_blocks)
    plan, skipped = [], []
    refs = dict(_iter_tensors(model_dir))
    tied = bool(hparams.get("tie_word_embeddings", False))
    for name, ref in refs.items():
        if name.endswith(".rotary_emb.inv_freq"):
            skipped.append(name)
            continue
        if name == "lm_head.weight" and tied and "model.embed_tokens.weight" in refs:
            skipped.append(name)  # llama.cpp reuses token_embd when output.weight is absent
            continue
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise CompressError(f"tensor '{name}' has no GGUF name for {hparams.get('architectures')}", where,
                                "the checkpoint holds tensors this exporter does not know (adapters, extra heads?);"
                                " merge adapters first and export a plain causal LM")
        plan.append((name, new, ref))
    return plan, skipped


def _transform(name: str, data: np.ndarray, hparams: dict[str, Any], spec: ArchSpec) -> np.ndarray:
    if spec.permute_qk:
        n_head = int(hparams["num_attention_heads"])
        n_kv = int(hparams.get("num_key_value_heads") or n_head)
        if name.endswith(("q_proj.weight", "q_proj.bias")):
            return permute_qk(data, n_head)
        if name.endswith(("k_proj.weight", "k_proj.bias")):
            return permute_qk(data, n_kv)
    return data


def _out_dtype(ndim: int, outtype: str) -> np.dtype:
    """Norms, biases and other 1-D tensors stay F32 (as llama.cpp's converter does)."""
    if outtype == "f32" or ndim <= 1:
        return np.dtype(np.float32)
    return np.dtype(np.float16)


def _rope(hparams: dict[str, Any]) -> dict[str, Any]:
    rope = dict(hparams.get("rope_scaling") or {})
    rope.update(hparams.get("rope_parameters") or {})
    rope.setdefault("rope_theta", hparams.get("rope_theta", 10000.0))
    rope["rope_type"] = rope.get("rope_type") or rope.get("type") or "default"
    return rope


def _llama3_rope_factors(rope: dict[str, Any], head_dim: int) -> np.ndarray:
    """Per-frequency factors llama.cpp reads from ``rope_freqs.weight`` for ``rope_type: llama3``."""
    base = float(rope["rope_theta"])
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for f in freqs:
        wavelen = 2 * np.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _write_hparams(writer: Any, hparams: dict[str, Any], outtype: str, where: str) -> np.ndarray | None:
    """Hyper-parameter keys; returns llama3 rope factors when the model needs them."""
    import gguf

    n_head = int(hparams["num_attention_heads"])
    head_dim = int(hparams.get("head_dim") or hparams["hidden_size"] // n_head)
    writer.add_block_count(int(hparams["num_hidden_layers"]))
    writer.add_context_length(int(hparams.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(int(hparams["hidden_size"]))
    writer.add_feed_forward_length(int(hparams["intermediate_size"]))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(int(hparams.get("num_key_value_heads") or n_head))
    writer.add_layer_norm_rms_eps(float(hparams.get("rms_norm_eps", 1e-6)))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(int(hparams["vocab_size"]))
    ftype = gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32
    writer.add_file_type(ftype)
    rope = _rope(hparams)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    kind = str(rope["rope_type"]).lower()
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif kind == "llama3":
        return _llama3_rope_factors(rope, head_dim)
    elif kind != "default":
        raise CompressError(f"rope scaling '{kind}' is not supported by this GGUF exporter", where,
                            "export a model with default, linear or llama3 rope scaling")
    return None


def export_gguf(model_dir: str | Path, out_path: str | Path, *, outtype: str = "f16",
                tokenizer_pre: str | None = None, name: str | None = None) -> GgufExport:
    """Write ``model_dir`` (an HF safetensors checkpoint) as one GGUF file.

    Args:
        model_dir: HF folder with config.json, safetensors weights and a tokenizer.
        out_path: the .gguf file to write (replaced atomically).
        outtype: ``f16`` (2-D weights in float16, the rest float32) or ``f32``.
        tokenizer_pre: llama.cpp pre-tokenizer name; None detects it from the tokenizer.
        name: ``general.name`` (default: the folder name).

    Returns:
        What was written.

    Raises:
        CompressError: unsupported architecture, rope scaling, tokenizer or tensor.
    """
    import gguf

    model_dir, out_path = Path(model_dir), Path(out_path)
    where = f"compress gguf export of {model_dir}"
    hparams = read_hparams(model_dir)
    if (hparams.get("quantization_config") or {}).get("quant_method") == "compressed-tensors":
        raise CompressError(f"{model_dir} holds compressed-tensors (packed 4-bit) weights", where,
                            "dequantise it first (cogumi.compress.quantize.dequantize_checkpoint)")
    arch_name, spec = arch_spec(hparams, where)
    plan, skipped = _plan_tensors(model_dir, hparams, spec, where)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.partial")
    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[spec.gguf_arch])
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name or model_dir.name)
        rope_factors = _write_hparams(writer, hparams, outtype, where)
        vocab = write_vocab(writer, model_dir, hparams, tokenizer_pre, where)
        n_params = 0
        infos = []
        for hf_name, gguf_name, ref in plan:
            shape = _shape(ref)
            dtype = _out_dtype(len(shape), outtype)
            writer.add_tensor_info(gguf_name, shape, dtype, int(np.prod(shape)) * dtype.itemsize)
            infos.append((hf_name, ref, dtype))
            n_params += int(np.prod(shape))
        if rope_factors is not None:
            writer.add_tensor_info(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                                   rope_factors.shape, rope_factors.dtype, rope_factors.nbytes)
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for hf_name, ref, dtype in infos:
            data = _transform(hf_name, _load(ref), hparams, spec).astype(dtype)
            writer.write_tensor_data(np.ascontiguousarray(data))
        if rope_factors is not None:
            writer.write_tensor_data(rope_factors)
        writer.close()
        os.replace(tmp, out_path)
    finally:
        if writer.fout is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (%s, %d tensors, tokenizer %s/%s)", out_path, arch_name, len(plan), vocab.model, vocab.pre)
    return GgufExport(out_path, arch_name, str(gguf.MODEL_ARCH_NAMES[spec.gguf_arch]), len(plan), n_params,
                      vocab.model, vocab.pre, skipped)


def _shape(ref: tuple[Path, str]) -> tuple[int, ...]:
    from safetensors import safe_open

    file, name = ref
    with safe_open(str(file), framework="pt") as f:
        return tuple(f.get_slice(name).get_shape())
