"""Clustering of mined failures: offline sentence embeddings + KMeans, with a readable report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cogumi.route.config import EmbeddingSettings


@dataclass
class Clustering:
    """KMeans labels of the failures and what was really fitted."""

    labels: list[int]
    k_requested: int
    k_used: int
    clusters: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def choose_k(requested: int, n_failures: int) -> tuple[int, str]:
    """The cluster count to fit: ``requested`` clamped to the number of failures.

    Returns:
        (k, note) — the note says why k differs from the request ('' when it does not).
    """
    if n_failures <= 0:
        return 0, "no failures to cluster"
    if requested > n_failures:
        return n_failures, f"k clamped from {requested} to {n_failures} (only {n_failures} failure(s))"
    return requested, ""


def cluster_embeddings(emb: np.ndarray, requested: int, seed: int = 0) -> tuple[list[int], int, str]:
    """KMeans over unit embeddings.

    Args:
        emb: ``(n, dim)`` array.
        requested: the configured k.
        seed: KMeans random state.

    Returns:
        (labels, k used, note).
    """
    k, note = choose_k(requested, len(emb))
    if k == 0:
        return [], 0, note
    if k == 1:
        return [0] * len(emb), 1, note
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(emb)
    return [int(x) for x in km.labels_], k, note


def cluster_failures(failures: list[dict[str, Any]], requested: int, settings: EmbeddingSettings,
                     examples: int = 3, seed: int = 0) -> Clustering:
    """Embed failure prompts with the offline embedder and group them.

    Args:
        failures: failed task rows (``prompt``, ``domain``, ``detail``).
        requested: KMeans k (clamped to the failures; the clamping is in ``note``).
        settings: the embedding model.
        examples: prompts shown per cluster in the report.
        seed: KMeans seed.

    Returns:
        A :class:`Clustering` (labels in the order of ``failures``).

    Raises:
        cogumi.route.embedding.EmbeddingModelError: the embedding model is missing.
    """
    if not failures:
        return Clustering([], requested, 0, [], "no failures to cluster")
    from cogumi.route.embedding import Embedder

    emb = Embedder(settings).encode([f["prompt"] for f in failures])
    labels, k, note = cluster_embeddings(emb, requested, seed)
    clusters = []
    for c in range(k):
        members = [f for f, lab in zip(failures, labels) if lab == c]
        domains: dict[str, int] = {}
        for m in members:
            domains[m["domain"]] = domains.get(m["domain"], 0) + 1
        clusters.append({"cluster": c, "size": len(members), "domains": domains,
                         "examples": [{"id": m["id"], "prompt": m["prompt"][:200], "detail": m.get("detail", "")}
                                      for m in members[:examples]]})
    return Clustering(labels, requested, k, sorted(clusters, key=lambda c: -c["size"]), note)


def clusters_markdown(c: Clustering) -> str:
    """The cluster report as Markdown."""
    lines = ["# Failure clusters", "", f"k requested {c.k_requested}, used {c.k_used}"
             + (f" — {c.note}" if c.note else ""), ""]
    for cl in c.clusters:
        doms = ", ".join(f"{d} {n}" for d, n in sorted(cl["domains"].items()))
        lines += [f"## Cluster {cl['cluster']} — {cl['size']} failure(s) ({doms})", ""]
        lines += [f"- `{e['id']}` {e['prompt']} — *{e['detail']}*" for e in cl["examples"]]
        lines.append("")
    return "\n".join(lines)
