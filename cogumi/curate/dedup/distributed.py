"""Ray Data adapter of the dedup core: correct across workers, not per block.

1. ``map_batches``: per row an exact key and the LSH band keys (compiled MinHash).
2. ``groupby(exact key)``: exact duplicates resolved across the whole cluster; the
   survivors are exploded into one ``(band key, id)`` row per band.
3. ``groupby(band key)``: bucket members become candidate pairs.
4. Driver: the candidate pairs (ids only, 2 x id per pair) are joined into
   candidate components with union-find.
5. ``groupby(component)``: the rows of each component (with their text) verify their
   candidate pairs with exact Jaccard, form clusters and keep one row each.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cogumi.curate.dedup.cluster import (
    DedupResult,
    Removal,
    UnionFind,
    bucket_pairs,
    rank_key,
    resolve_component,
)
from cogumi.curate.dedup.minhash import MinHasher, band_keys, exact_key, join_fields, lsh_params

KEY_SCHEMA = pa.schema([("id", pa.string()), ("score", pa.float64()), ("exact", pa.string()),
                        ("bands", pa.list_(pa.uint64()))])
EXPLODED_SCHEMA = pa.schema([("kind", pa.string()), ("id", pa.string()), ("band", pa.uint64()),
                             ("kept", pa.string())])
PAIR_SCHEMA = pa.schema([("a", pa.string()), ("b", pa.string())])
REMOVAL_SCHEMA = pa.schema([("id", pa.string()), ("kind", pa.string()), ("cluster", pa.string()),
                            ("kept", pa.string()), ("similarity", pa.float64())])


def _scores(batch: pa.Table, score_col: str | None) -> list[float | None]:
    if score_col and score_col in batch.column_names:
        return batch.column(score_col).to_pylist()
    return [None] * batch.num_rows


def key_rows(batch: pa.Table, id_col: str, score_col: str | None, fields: list[str], num_perm: int, k: int,
             seed: int, bands: int, rows: int) -> pa.Table:
    """Stage 1 (a ``map_batches`` UDF): exact key and band keys of every row."""
    rows_ = batch.select([c for c in dict.fromkeys([id_col, *fields]) if c in batch.column_names]).to_pylist()
    texts = [join_fields(r, fields) for r in rows_]
    sigs = MinHasher(num_perm, k, seed).signatures(texts)
    keys = band_keys(sigs, bands, rows)
    return pa.table({"id": pa.array([str(r[id_col]) for r in rows_], pa.string()),
                     "score": pa.array(_scores(batch, score_col), pa.float64()),
                     "exact": pa.array([exact_key(t) for t in texts], pa.string()),
                     "bands": pa.array(list(keys), pa.list_(pa.uint64()))}, schema=KEY_SCHEMA)


def resolve_exact(group: pa.Table) -> pa.Table:
    """Stage 2 (``map_groups`` over the exact key): drop exact copies, explode the keeper's bands."""
    ids, scores = group.column("id").to_pylist(), group.column("score").to_pylist()
    order = sorted(range(len(ids)), key=lambda i: rank_key(ids[i], scores[i]))
    keeper = order[0]
    kinds, out_ids, out_bands, kept = [], [], [], []
    for i in order[1:]:
        kinds.append("exact"), out_ids.append(ids[i]), out_bands.append(0), kept.append(ids[keeper])
    for band in group.column("bands")[keeper].as_py():
        kinds.append("band"), out_ids.append(ids[keeper]), out_bands.append(band), kept.append(None)
    return pa.table({"kind": kinds, "id": out_ids, "band": pa.array(out_bands, pa.uint64()), "kept": kept},
                     schema=EXPLODED_SCHEMA)


def bucket_to_pairs(group: pa.Table) -> pa.Table:
    """Stage 3 (``map_groups`` over the band key): candidate pairs of one bucket."""
    members = sorted(set(group.column("id").to_pylist()))
    pairs = list(bucket_pairs(members))
    return pa.table({"a": [p[0] for p in pairs], "b": [p[1] for p in pairs]}, schema=PAIR_SCHEMA)


def tag_components(batch: pa.Table, id_col: str, lookup_ref: Any) -> pa.Table:
    """Stage 5a: keep rows of candidate components, tagged with the component and their pairs."""
    import ray

    comp, partners = ray.get(lookup_ref)
    ids = [str(x) for x in batch.column(id_col).to_pylist()]
    mask = [i in comp for i in ids]
    if not any(mask):
        return batch.slice(0, 0).append_column("_comp", pa.array([], pa.string())).append_column(
            "_partners", pa.array([], pa.list_(pa.string())))
    kept = batch.filter(pa.array(mask))
    kept_ids = [i for i, m in zip(ids, mask) if m]
    kept = kept.append_column("_comp", pa.array([comp[i] for i in kept_ids], pa.string()))
    return kept.append_column("_partners", pa.array([partners.get(i, []) for i in kept_ids],
                                                    pa.list_(pa.string())))


def resolve_near(group: pa.Table, id_col: str, score_col: str | None, fields: list[str], threshold: float,
                 k: int) -> pa.Table:
    """Stage 5b (``map_groups`` over the component): exact-Jaccard verification and keepers."""
    rows = group.to_pylist()
    ids = [str(r[id_col]) for r in rows]
    pairs = [(rid, other) for rid, r in zip(ids, rows) for other in (r["_partners"] or [])]
    scores = [r.get(score_col) if score_col else None for r in rows]
    removals, verified = resolve_component(ids, [join_fields(r, fields) for r in rows], scores, pairs,
                                           threshold, k)
    # a verified pair always yields a removal, so the count rides on the first removal row
    counts = [verified] + [0] * (len(removals) - 1) if removals else []
    return _removal_table(removals).append_column("verified", pa.array(counts, pa.int64()))


def _parts(keys: int, wanted: int) -> int:
    """Shuffle partitions for about ``keys`` distinct keys: one partition unless each gets hundreds.

    (Ray 2.60's hash-shuffle reduce fails on an empty partition, which small inputs make likely.)
    """
    return max(1, min(wanted, keys // 256))


def _kind_is(batch: pa.Table, kind: str) -> pa.Table:
    return batch.filter(pc.equal(batch.column("kind"), kind))


def _removal_table(removals: list[Removal]) -> pa.Table:
    return pa.table({"id": [r.id for r in removals], "kind": [r.kind for r in removals],
                     "cluster": [r.cluster for r in removals], "kept": [r.kept for r in removals],
                     "similarity": [r.similarity for r in removals]}, schema=REMOVAL_SCHEMA)


def dedup_dataset(ds, *, id_col: str, fields: list[str], score_col: str | None = None, threshold: float = 0.8,
                  num_perm: int = 128, k: int = 3, seed: int = 1, recall_at_threshold: float = 0.98,
                  workers: int = 1, num_cpus: float = 1.0, batch_size: int = 1024,
                  partitions: int | None = None) -> DedupResult:
    """Find exact and near duplicates in a Ray Dataset across the whole cluster.

    Args:
        ds: rows with ``id_col`` (unique), the text ``fields`` and optionally ``score_col``.
        workers: parallel signature tasks.
        partitions: shuffle partitions of the group-bys (default: 2 per worker).

    Returns:
        The removals (exact and near) with cluster ids, and counters.
    """
    import ray
    import ray.data

    bands, rows = lsh_params(threshold, num_perm, recall_at_threshold)
    partitions = partitions or max(2, 2 * workers)
    result = DedupResult(bands=bands, rows=rows)
    keyed = ds.map_batches(key_rows, batch_format="pyarrow", batch_size=batch_size,
                           compute=ray.data.TaskPoolStrategy(size=workers),
                           num_cpus=num_cpus,
                           fn_kwargs={"id_col": id_col, "score_col": score_col, "fields": fields, "num_perm": num_perm,
                                          "k": k, "seed": seed, "bands": bands, "rows": rows})
    keyed = keyed.materialize()
    n = keyed.count()
    if n == 0:
        return result
    exploded = (keyed.groupby("exact", num_partitions=_parts(n, partitions))
                .map_groups(resolve_exact, batch_format="pyarrow").materialize())
    exact = exploded.map_batches(_kind_is, batch_format="pyarrow", fn_kwargs={"kind": "exact"}).take_all()
    result.removals = [Removal(r["id"], "exact", r["kept"], r["kept"], 1.0) for r in exact]
    pair_rows = (exploded.map_batches(_kind_is, batch_format="pyarrow", fn_kwargs={"kind": "band"})
                 .groupby("band", num_partitions=_parts(n * bands, partitions))
                 .map_groups(bucket_to_pairs, batch_format="pyarrow").take_all())
    pairs = {(r["a"], r["b"]) for r in pair_rows}
    result.candidates = len(pairs)
    if not pairs:
        return result
    uf = UnionFind()
    partners: dict[str, list[str]] = {}
    for a, b in pairs:
        uf.union(a, b)
        partners.setdefault(a, []).append(b)
    comp = {x: uf.find(x) for x in uf.parent}
    lookup = ray.put((comp, partners))
    exact_gone = {r.id for r in result.removals}
    tagged = ds.map_batches(tag_components, batch_format="pyarrow", batch_size=batch_size, num_cpus=num_cpus,
                            fn_kwargs={"id_col": id_col, "lookup_ref": lookup})
    near = tagged.groupby("_comp", num_partitions=_parts(len(set(comp.values())), partitions)).map_groups(
        resolve_near, batch_format="pyarrow",
        fn_kwargs={"id_col": id_col, "score_col": score_col, "fields": fields, "threshold": threshold, "k": k}).take_all()
    for r in near:
        result.verified += int(r["verified"] or 0)
        if r["kind"] == "near" and r["id"] not in exact_gone:
            result.removals.append(Removal(r["id"], "near", r["cluster"], r["kept"], float(r["similarity"])))
    return result


def removal_lookup(result: DedupResult) -> dict[str, dict[str, Any]]:
    """``{removed id: {kind, cluster, kept, similarity}}`` for marking rows."""
    return {r.id: {"kind": r.kind, "cluster": r.cluster, "kept": r.kept, "similarity": r.similarity}
            for r in result.removals}

