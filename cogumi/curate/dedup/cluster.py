"""Duplicate clusters: bucket pairs, exact verification, connected components, one keeper each.

These functions are the pure core shared by the in-process dedup (tests, small
files, the benchmark's single worker) and the Ray Data adapter in
:mod:`cogumi.curate.dedup.distributed`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cogumi.curate.dedup.minhash import (
    MinHasher,
    band_keys,
    exact_key,
    jaccard,
    lsh_params,
    shingle_set,
)

MAX_ALL_PAIRS = 64  # buckets larger than this contribute a star (first member to each) instead of all pairs


@dataclass(frozen=True)
class Removal:
    """One row removed as a duplicate."""

    id: str
    kind: str  # "exact" or "near"
    cluster: str  # id of the cluster = id of the row kept
    kept: str
    similarity: float


@dataclass
class DedupResult:
    """What dedup decided: removed rows with their cluster, and counters."""

    removals: list[Removal] = field(default_factory=list)
    candidates: int = 0
    verified: int = 0
    bands: int = 0
    rows: int = 0

    @property
    def removed_ids(self) -> set[str]:
        return {r.id for r in self.removals}

    def count(self, kind: str) -> int:
        return sum(r.kind == kind for r in self.removals)


class UnionFind:
    """Disjoint sets over hashable items (path halving, union by size)."""

    def __init__(self) -> None:
        self.parent: dict = {}
        self.size: dict = {}

    def find(self, x):
        parent = self.parent
        if x not in parent:
            parent[x], self.size[x] = x, 1
            return x
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self) -> dict:
        out: dict = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return out


def rank_key(row_id: str, score: float | None) -> tuple:
    """Sort key of a cluster member: highest judge score first, then the smallest id."""
    s = float(score) if score is not None and not (isinstance(score, float) and np.isnan(score)) else float("-inf")
    return (-s, str(row_id))


def bucket_pairs(members: Sequence) -> Iterable[tuple]:
    """Candidate pairs of one bucket (sorted members): all pairs, or a star for huge buckets."""
    members = sorted(members)
    if len(members) <= MAX_ALL_PAIRS:
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                yield members[i], members[j]
    else:
        for other in members[1:]:
            yield members[0], other


def candidate_pairs(keys: np.ndarray) -> set[tuple[int, int]]:
    """Index pairs that share a bucket in any band.

    Args:
        keys: ``(n, bands)`` band keys from :func:`band_keys`.
    """
    pairs: set[tuple[int, int]] = set()
    for band in range(keys.shape[1]):
        col = keys[:, band]
        order = np.argsort(col, kind="stable")
        sorted_keys = col[order]
        bounds = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1], True])
        for lo, hi in itertools.pairwise(bounds):
            if hi - lo > 1:
                pairs.update(bucket_pairs(order[lo:hi].tolist()))
    return pairs


def resolve_component(ids: Sequence[str], texts: Sequence[str], scores: Sequence[float | None],
                      pairs: Iterable[tuple[str, str]], threshold: float, k: int = 3
                      ) -> tuple[list[Removal], int]:
    """Verify candidate pairs with exact Jaccard and pick one keeper per verified cluster.

    Args:
        ids, texts, scores: the rows of one candidate component.
        pairs: candidate pairs (by id) inside the component.
        threshold: Jaccard at or above which two rows are duplicates.
        k: shingle size.

    Returns:
        (near-duplicate removals, number of verified pairs).
    """
    index = {rid: i for i, rid in enumerate(ids)}
    sets: dict[int, np.ndarray] = {}
    uf = UnionFind()
    best_sim: dict[str, float] = {}
    verified = 0
    for a, b in pairs:
        ia, ib = index[a], index[b]
        for i in (ia, ib):
            if i not in sets:
                sets[i] = shingle_set(texts[i], k)
        sim = jaccard(sets[ia], sets[ib])
        if sim >= threshold:
            verified += 1
            uf.union(a, b)
            best_sim[a] = max(best_sim.get(a, 0.0), sim)
            best_sim[b] = max(best_sim.get(b, 0.0), sim)
    removals = []
    for members in uf.groups().values():
        ranked = sorted(members, key=lambda rid: rank_key(rid, scores[index[rid]]))
        keeper = ranked[0]
        removals += [Removal(rid, "near", keeper, keeper, round(best_sim[rid], 4)) for rid in ranked[1:]]
    return removals, verified


def exact_removals(ids: Sequence[str], keys: Sequence[str], scores: Sequence[float | None]) -> list[Removal]:
    """Rows whose exact key repeats; the best-ranked member of each key is kept."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        ranked = sorted(members, key=lambda i: rank_key(ids[i], scores[i]))
        keeper = str(ids[ranked[0]])
        out += [Removal(str(ids[i]), "exact", keeper, keeper, 1.0) for i in ranked[1:]]
    return out


def dedup_in_memory(ids: Sequence[str], texts: Sequence[str], scores: Sequence[float | None] | None = None,
                    threshold: float = 0.8, num_perm: int = 128, k: int = 3, seed: int = 1,
                    recall_at_threshold: float = 0.98) -> DedupResult:
    """Exact then MinHash-LSH near-duplicate removal of one in-memory collection.

    Args:
        ids: unique row ids.
        texts: the compared text of each row (see :func:`join_fields`).
        scores: judge scores (None = unscored); decide which cluster member is kept.

    Returns:
        The removals (exact and near) and counters.
    """
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("dedup needs unique row ids")
    scores = list(scores) if scores is not None else [None] * len(ids)
    result = DedupResult()
    result.removals = exact_removals(ids, [exact_key(t) for t in texts], scores)
    gone = result.removed_ids
    keep = [i for i, rid in enumerate(ids) if rid not in gone]
    bands, rows = lsh_params(threshold, num_perm, recall_at_threshold)
    result.bands, result.rows = bands, rows
    hasher = MinHasher(num_perm, k, seed)
    sigs = hasher.signatures([texts[i] for i in keep])
    pairs = candidate_pairs(band_keys(sigs, bands, rows))
    result.candidates = len(pairs)
    uf = UnionFind()
    for a, b in pairs:
        uf.union(a, b)
    by_root: dict[int, list[tuple[str, str]]] = {}
    for a, b in pairs:
        by_root.setdefault(uf.find(a), []).append((ids[keep[a]], ids[keep[b]]))
    for root, members in uf.groups().items():
        rows_idx = [keep[m] for m in members]
        removals, verified = resolve_component([ids[i] for i in rows_idx], [texts[i] for i in rows_idx],
                                               [scores[i] for i in rows_idx], by_root[root], threshold, k)
        result.removals += removals
        result.verified += verified
    return result
