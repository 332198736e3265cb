"""Load models: local HF folders, hub ids, GGUF files and the embedded default.

Every failure becomes a :class:`ModelLoadError` that names the source and a fix,
instead of a traceback from deep inside transformers or llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cogumi.config_base import EMBEDDED_MODEL, ModelConfig
from cogumi.errors import ModelLoadError
from cogumi.models.embedded import embedded_gguf_path, materialise_hf

GGUF_MAGIC = b"GGUF"


@dataclass
class ModelSource:
    """Where a model's weights are: ``kind`` is gguf, hf-dir or hub."""

    kind: Literal["gguf", "hf-dir", "hub"]
    location: str
    gguf_file: str | None = None
    embedded: bool = False


def check_gguf(path: str | Path) -> Path:
    """Make sure ``path`` exists and starts with the GGUF magic.

    Raises:
        ModelLoadError: missing file, or a file that is not GGUF.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"GGUF file {p} does not exist", str(p), "check the model path")
    with open(p, "rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise ModelLoadError(f"{p} is not a GGUF file (it starts with {head!r}, not b'GGUF')", str(p),
                             "point model at a .gguf file, or use backend transformers for an HF folder")
    return p


def resolve_source(cfg: ModelConfig) -> ModelSource:
    """Decide where ``cfg.model`` lives without loading it."""
    if cfg.model == EMBEDDED_MODEL:
        return ModelSource("gguf", str(embedded_gguf_path()), embedded=True)
    p = Path(cfg.model).expanduser()
    if p.suffix == ".gguf":
        return ModelSource("gguf", str(check_gguf(p)))
    if p.is_dir():
        if cfg.gguf_file:
            check_gguf(p / cfg.gguf_file)
        return ModelSource("hf-dir", str(p), cfg.gguf_file)
    if cfg.model.startswith((".", "/", "~")) or p.exists():
        raise ModelLoadError(f"model path {cfg.model} does not exist", cfg.model,
                             "pass an existing HF folder, a .gguf file, a hub id or embedded:smollm2")
    return ModelSource("hub", cfg.model, cfg.gguf_file)


def hf_checkpoint(cfg: ModelConfig) -> str:
    """An HF checkpoint location (folder or hub id) for phases that need real weights.

    The embedded GGUF (or any GGUF file) is materialised once into the cache.
    """
    src = resolve_source(cfg)
    if src.kind == "gguf":
        return str(materialise_hf(Path(src.location)))
    return src.location


def load_tokenizer(location: str, gguf_file: str | None = None) -> Any:
    """Tokenizer of an HF folder or hub id."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(location, gguf_file=gguf_file) if gguf_file \
            else AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as exc:
        raise _hub_error(location, exc) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(location: str, *, device: str = "cpu", dtype: str = "auto",
                   quantization: Literal["none", "nf4"] = "none", gguf_file: str | None = None,
                   adapter: str | None = None) -> Any:
    """A causal LM from an HF folder or hub id, optionally 4-bit NF4 and with a PEFT adapter.

    Args:
        location: folder or hub id.
        device: a resolved device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
        dtype: ``auto`` = bfloat16 on CUDA, float32 elsewhere.
        quantization: ``nf4`` loads 4-bit NF4 with double quantisation (bitsandbytes).
        adapter: PEFT adapter folder applied on top.
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = _torch_dtype(dtype, device)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype)
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as exc:
        raise _hub_error(location, exc) from None
    if quantization != "nf4":
        model = model.to(device)  # type: ignore[arg-type]  # transformers types the wrapped .to() as unbound
    if adapter:
        model = apply_adapter(model, adapter)
    model.eval()
    return model


def apply_adapter(model: Any, adapter: str) -> Any:
    """Wrap ``model`` with the PEFT adapter in folder ``adapter``."""
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json)", adapter,
                             "point adapter at the adapter/ folder written by training")
    return PeftModel.from_pretrained(model, adapter)


def _torch_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def _hub_error(location: str, exc: Exception) -> ModelLoadError:
    if Path(location).is_dir():
        return ModelLoadError(f"could not load the model in {location} ({str(exc).splitlines()[0][:200]})",
                              location, "check that the folder holds config.json and weights")
    return ModelLoadError(
        f"could not load '{location}' from the Hugging Face Hub ({str(exc).splitlines()[0][:200]})", location,
        "check the id and your network; gated models need `huggingface-cli login`; offline, "
        "pass a local folder or a .gguf file instead")
