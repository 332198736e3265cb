"""HF checkpoints as compression inputs and outputs: checks, clean views, sizes, dequantisation."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from cogumi.compress.errors import CompressError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".zst")


def check_hf_dir(model_dir: str | Path, step: str) -> Path:
    """Make sure ``model_dir`` is an HF causal-LM checkpoint with weights and a tokenizer.

    Raises:
        CompressError: the folder, its config, weights or tokenizer are missing.
    """
    path = Path(model_dir)
    where = f"compress {step}: {path}"
    if not path.is_dir():
        raise CompressError(f"model folder {path} does not exist", where,
                            "set compress.model to a merged HF model folder (e.g. runs/<run>/train/merged)")
    if not (path / "config.json").is_file():
        raise CompressError(f"{path} has no config.json", where, "point compress.model at an HF checkpoint folder")
    if not any(path.glob("*.safetensors")):
        raise CompressError(f"{path} has no safetensors weights", where,
                            "save the model with save_pretrained() (safetensors is the default)")
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise CompressError(f"{path} has no tokenizer", where, "save the tokenizer into the model folder")
    return path


def stale_quantization(model_dir: Path) -> str | None:
    """The ``quant_method`` of a config whose weights are in fact dense (a materialised GGUF)."""
    qcfg = json.loads((model_dir / "config.json").read_text()).get("quantization_config") or {}
    return qcfg.get("quant_method") if qcfg.get("quant_method") == "gguf" else None


def clean_view(model_dir: Path, scratch: Path) -> Path:
    """A view of ``model_dir`` without a stale ``quantization_config``, or ``model_dir`` itself.

    A checkpoint materialised from a GGUF keeps ``quantization_config: {quant_method:
    gguf}`` in config.json although its safetensors hold dense floats; llmcompressor
    then refuses it as "already quantized". The view links every file and writes a
    config.json without that key.
    """
    if stale_quantization(model_dir) is None:
        return model_dir
    view = scratch / f"{model_dir.name}-dense"
    view.mkdir(parents=True, exist_ok=True)
    for item in model_dir.iterdir():
        if item.name != "config.json" and not (view / item.name).exists():
            os.symlink(item.resolve(), view / item.name)
    config = json.loads((model_dir / "config.json").read_text())
    config.pop("quantization_config", None)
    (view / "config.json").write_text(json.dumps(config, indent=2))
    log.info("%s: dropped a stale gguf quantization_config (weights are dense)", model_dir)
    return view


def weights_bytes(path: str | Path) -> int:
    """Bytes of model weights in a folder (safetensors/bin/gguf/zst files) or of one file."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))


def count_parameters(model_dir: Path) -> int:
    """Parameters stored in a safetensors checkpoint (from headers only)."""
    from safetensors import safe_open

    total = 0
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                n = 1
                for d in f.get_slice(name).get_shape():
                    n *= d
                total += n
    return total


def is_compressed_tensors(model_dir: Path) -> bool:
    """Whether a checkpoint stores compressed-tensors (packed) weights."""
    qcfg = json.loads((model_dir / "config.json").read_text()).get("quantization_config") or {}
    return qcfg.get("quant_method") == "compressed-tensors"


def load_for_eval(model_dir: Path, device: str = "cpu") -> Any:
    """A causal LM for scoring: float32 on CPU, compressed-tensors weights decompressed."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32 if device == "cpu" else torch.bfloat16}
    if is_compressed_tensors(model_dir):
        from transformers import CompressedTensorsConfig

        kwargs["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    return model.to(device).eval()  # type: ignore[arg-type]  # transformers types the wrapped .to() as unbound


def dequantize_checkpoint(model_dir: Path, out_dir: Path) -> Path:
    """Write a dense float checkpoint of a compressed-tensors one (for GGUF export from W4A16).

    Returns:
        ``out_dir`` holding config.json without quantization_config, safetensors and the tokenizer.
    """
    from transformers import AutoTokenizer

    model = load_for_eval(model_dir)
    model.config.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    fresh = type(model)(model.config)
    fresh.load_state_dict(state, strict=False)
    fresh.save_pretrained(out_dir)
    config = json.loads((out_dir / "config.json").read_text())
    config.pop("quantization_config", None)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    return out_dir
