"""Distributed dedup on Ray Data: planted near-duplicates across blocks, exact-Jaccard ground truth, CLI."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cogumi.curate.dedup.cluster import UnionFind, dedup_in_memory
from cogumi.curate.dedup.distributed import dedup_dataset
from cogumi.curate.dedup.minhash import exact_key, jaccard, shingle_set

pytestmark = pytest.mark.integration


def planted_corpus(n_base: int = 240, n_dups: int = 60, seed: int = 0):
    """Base documents plus edited copies of some of them (Jaccard from ~0.6 to 1.0), copies at the end."""
    rng = random.Random(seed)
    vocab = [f"v{i}" for i in range(4000)]
    docs = [" ".join(rng.choice(vocab) for _ in range(50)) for _ in range(n_base)]
    for j in range(n_dups):
        words = docs[j].split()
        for _ in range(rng.randint(0, 6)):
            words[rng.randrange(len(words))] = rng.choice(vocab)
        docs.append(" ".join(words))
    docs.append(docs[5].upper())  # an exact duplicate after normalisation
    return [{"id": f"row{i:04d}", "instruction": d, "response": "ok", "score": float(i % 7)}
            for i, d in enumerate(docs)]


def truth(rows, threshold=0.8):
    """Rows to remove by exact Jaccard over all pairs: cluster size - 1 for every cluster."""
    sets = [shingle_set(r["instruction"] + "\n" + r["response"]) for r in rows]
    uf = UnionFind()
    edges = set()
    for i in range(len(rows)):
        uf.find(i)
        for j in range(i + 1, len(rows)):
            if jaccard(sets[i], sets[j]) >= threshold:
                uf.union(i, j)
                edges.add((i, j))
    expected = sum(len(g) - 1 for g in uf.groups().values())
    return expected, edges, sets


def test_distributed_dedup_matches_exact_jaccard_across_blocks(ray_local):
    import ray.data

    rows = planted_corpus()
    expected, edges, sets = truth(rows)
    assert expected >= 30  # the corpus has real near-duplicates on both sides of the threshold
    ds = ray.data.from_items(rows).repartition(12)  # originals and their copies sit in different blocks
    result = dedup_dataset(ds, id_col="id", fields=["instruction", "response"], score_col="score",
                           workers=2, batch_size=32)
    index = {r["id"]: i for i, r in enumerate(rows)}
    removed = result.removals
    keys = [exact_key(r["instruction"] + "\n" + r["response"]) for r in rows]
    assert result.count("exact") == len(keys) - len(set(keys)) >= 1  # unedited copies + the upper-cased one
    for r in removed:  # precision: every removal has a true partner (exact Jaccard >= 0.8) in its cluster
        a, b = index[r.id], index[r.kept]
        assert r.kind == "exact" or jaccard(sets[a], sets[b]) >= 0.8 or any(
            index[r.id] in e for e in edges)
    assert len(removed) >= 0.95 * expected  # recall of removals
    assert len(removed) <= expected
    local = dedup_in_memory([r["id"] for r in rows], [r["instruction"] + "\n" + r["response"] for r in rows],
                            [r["score"] for r in rows])
    assert sorted((r.id, r.kept) for r in removed) == sorted((r.id, r.kept) for r in local.removals)


def test_dedup_command_on_jsonl_and_parquet(ray_local, tmp_path, cli):
    rows = planted_corpus(60, 10, seed=3)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = cli("dedup", str(src), "--out", str(tmp_path / "out.jsonl"), "--threshold", "0.8",
                    "--fields", "instruction,response", "--id-field", "id", "--score-field", "score")
    assert code == 0, out
    kept = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    report = [json.loads(x) for x in (tmp_path / "out.jsonl.duplicates.jsonl").read_text().splitlines()]
    assert len(kept) + len(report) == len(rows) and report
    assert {r["id"] for r in report}.isdisjoint({r["id"] for r in kept})
    assert all(r["cluster"] in {k["id"] for k in kept} for r in report)

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    code, out = cli("dedup", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "out.parquet"),
                    "--workers", "2", "--score-field", "score")
    assert code == 0, out
    assert pq.read_table(tmp_path / "out.parquet").num_rows == len(kept)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "response": "b"}\n{"instruction": oops}\n')
    code, out = cli("dedup", str(bad), "--out", str(tmp_path / "x.jsonl"))
    assert code == 2 and "line 2" in out and "bad.jsonl" in out
    code, out = cli("dedup", str(src), "--out", str(tmp_path / "x.jsonl"), "--fields", "question")
    assert code == 2 and "lacks column(s) question" in out
