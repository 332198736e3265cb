"""Feature extraction: base answers with confidence features, and sentence embeddings.

Two batch UDFs (plain classes over ``{column: array}`` batches, usable without Ray)
and :func:`extract`, the thin Ray Data adapter that maps them over the rows with one
actor each (``router.extract``) — or runs them in this process when ``use_ray`` is off.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from cogumi.config_base import ModelConfig
from cogumi.route.config import EmbeddingSettings, ExtractSettings
from cogumi.route.features import CONFIDENCE_KEYS, confidence_features

log = logging.getLogger(__name__)


class BaseAnswerer:
    """Batch UDF: the base model answers each ``prompt`` (greedy, with token logprobs).

    Adds ``base_answer`` and the four ``base_<feature>`` columns.

    Args:
        model_json: the base :class:`ModelConfig` as JSON (llama.cpp needs ``logits_all``; it is forced on).
        max_tokens: answer length.
        top_logprobs: alternatives per token (entropy feature); at least 1 is requested.
        threads: llama.cpp threads when the model config sets none (the CPUs Ray reserved:
            more threads than reserved cores spin against each other, 10x slower measured here).
    """

    def __init__(self, model_json: str, max_tokens: int, top_logprobs: int, threads: int | None = None):
        from cogumi.models.inference import make_backend

        cfg = ModelConfig.model_validate_json(model_json)
        if cfg.backend == "llamacpp":
            cfg = cfg.model_copy(update={"logits_all": True, "n_threads": cfg.n_threads or threads})
        self.backend = make_backend(cfg)
        self.max_tokens, self.top_logprobs = max_tokens, max(1, top_logprobs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cogumi.models.inference import SamplingParams

        params = SamplingParams(max_tokens=self.max_tokens, temperature=0.0, logprobs=True,
                                top_logprobs=self.top_logprobs)
        answers, feats = [], []
        for prompt in batch["prompt"]:
            gen = self.backend.chat([{"role": "user", "content": str(prompt)}], params)
            answers.append(gen.text)
            feats.append(confidence_features(gen.logprobs))
        out = dict(batch)
        out["base_answer"] = np.array(answers, dtype=object)
        for k in CONFIDENCE_KEYS:
            out[f"base_{k}"] = np.array([f[k] for f in feats], dtype=np.float64)
        return out


class TextEmbedder:
    """Batch UDF: adds ``embedding`` (``(n, E)`` float32) for the ``text`` column.

    Args:
        settings_json: :class:`EmbeddingSettings` as JSON.
    """

    def __init__(self, settings_json: str):
        from cogumi.route.embedding import Embedder

        self.embedder = Embedder(EmbeddingSettings.model_validate_json(settings_json))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**batch, "embedding": self.embedder.encode([str(t) for t in batch["text"]])}


def extract(rows: list[dict[str, Any]], texts: list[str], base: ModelConfig | None, embedding: EmbeddingSettings,
            settings: ExtractSettings, max_tokens: int, top_logprobs: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Base answers for ``rows`` (when ``base`` is given) and embeddings for ``texts``.

    Args:
        rows: routing rows with ``prompt``; left unchanged when ``base`` is None.
        texts: every string to embed (queries, escalation messages...), in order.
        base: the base model, or None when the rows already carry confidence features.
        embedding: the embedding model.
        settings: Ray on/off, address, batch size and CPUs per actor.
        max_tokens, top_logprobs: base answer settings.

    Returns:
        (rows in their original order, ``(len(texts), E)`` embeddings).
    """
    if not settings.use_ray:
        if base is not None:
            answer = BaseAnswerer(base.model_dump_json(), max_tokens, top_logprobs)
            rows = [_row(answer(_batch([r])), 0) for r in rows]
        return rows, TextEmbedder(embedding.model_dump_json())({"text": np.array(texts, dtype=object)})["embedding"]
    from cogumi.raycluster import connect

    connect(settings.address, log_to_driver=False)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    if base is not None:
        ds: ray.data.Dataset = ray.data.from_items([{**r, "_row": i} for i, r in enumerate(rows)])
        ds = ds.map_batches(BaseAnswerer, fn_constructor_kwargs={"model_json": base.model_dump_json(),
                                                                 "max_tokens": max_tokens,
                                                                 "top_logprobs": top_logprobs,
                                                                 "threads": max(1, math.ceil(settings.base_num_cpus))},
                            batch_size=settings.batch_size, compute=ray.data.ActorPoolStrategy(size=1),
                            num_cpus=settings.base_num_cpus, num_gpus=settings.base_num_gpus or None)
        rows = sorted(ds.take_all(), key=lambda r: r["_row"])
        rows = [{k: _plain(v) for k, v in r.items() if k != "_row"} for r in rows]
        log.info("router: base answered %d prompts on Ray", len(rows))
    embed_ds: ray.data.Dataset = ray.data.from_items([{"text": t, "_row": i} for i, t in enumerate(texts)])
    embed_ds = embed_ds.map_batches(TextEmbedder, fn_constructor_kwargs={"settings_json": embedding.model_dump_json()},
                                    batch_size=max(embedding.batch_size, settings.batch_size),
                                    compute=ray.data.ActorPoolStrategy(size=1), num_cpus=settings.embed_num_cpus)
    out = sorted(embed_ds.take_all(), key=lambda r: r["_row"])
    emb = np.stack([np.asarray(r["embedding"], dtype=np.float32) for r in out]) if out else np.zeros((0, 1))
    return rows, emb


def _batch(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}


def _row(batch: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    return {k: _plain(v[i]) for k, v in batch.items()}


def _plain(v: Any) -> Any:
    """numpy scalars -> Python values (rows go to JSON/Parquet and back)."""
    return v.item() if isinstance(v, np.generic) else v
