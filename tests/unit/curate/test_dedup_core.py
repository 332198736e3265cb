"""Dedup core: shingles, vectorised MinHash against exact Jaccard, LSH parameters, clusters and keepers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cogumi.curate.dedup.cluster import candidate_pairs, dedup_in_memory, rank_key, resolve_component
from cogumi.curate.dedup.minhash import (
    MinHasher,
    band_keys,
    _mix32,
    candidate_probability,
    exact_key,
    jaccard,
    lsh_params,
    shingle_codes,
    shingle_set,
)


def spec_shingles(text: str, k: int = 3) -> set[str]:
    """The spec appendix's create_shingles, verbatim."""
    text = text.lower().strip()
    return {text[i:i + k] for i in range(len(text) - k + 1)}


def spec_jaccard(a: str, b: str) -> float:
    sa, sb = spec_shingles(a), spec_shingles(b)
    return len(sa & sb) / len(sa | sb)


def test_shingle_set_is_the_spec_shingle_set():
    text = "  The Quick brown fox — naïve café, 3.14!  "
    assert len(shingle_set(text)) == len(spec_shingles(text))
    other = "the quick brown dog — naive cafe"
    assert jaccard(shingle_set(text), shingle_set(other)) == pytest.approx(spec_jaccard(text, other))


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("texts", [
    ["Hello World", "abc", "  x y z  ", "naïve café ☕ text", "surrogate \ud800 half"],
    ["with a short one", "ab", "", "and more text"],
    [],
])
def test_compiled_signatures_are_minhash_by_definition(texts, k):
    """Each slot is min over the text's shingles of a_p * mix32(code) mod 2**32 (numpy reference)."""
    hasher = MinHasher(64, k, seed=5)
    sigs = hasher.signatures(texts)
    assert sigs.shape == (len(texts), 64) and sigs.dtype == np.uint32
    for row, text in zip(sigs, texts):
        hashes = _mix32(shingle_codes(text, k)).astype(np.uint64)
        expected = ((hasher.a.astype(np.uint64) * hashes[None, :]) & np.uint64(0xFFFFFFFF)).min(axis=1)
        assert row.tolist() == expected.astype(np.uint32).tolist()


def test_short_texts_are_one_shingle_and_never_collide_with_full_kgrams():
    assert len(shingle_codes("ab")) == 1 and len(shingle_codes("")) == 1
    assert shingle_codes("ab")[0] not in set(shingle_codes("xab").tolist())


def test_signature_estimates_exact_jaccard_without_bias():
    rng = random.Random(0)
    words = [f"w{i}" for i in range(400)]
    hasher = MinHasher(128, 3, seed=7)
    errors = []
    for _ in range(150):
        base = [rng.choice(words) for _ in range(80)]
        other = list(base)
        for _ in range(rng.randint(0, 30)):
            other[rng.randrange(len(other))] = rng.choice(words)
        a, b = " ".join(base), " ".join(other)
        sig = hasher.signatures([a, b])
        errors.append(float(np.mean(sig[0] == sig[1])) - spec_jaccard(a, b))
    errors = np.array(errors)
    assert abs(errors.mean()) < 0.01
    assert errors.std() < 0.05  # theory: sqrt(J(1-J)/128) <= 0.044


def test_signatures_do_not_depend_on_batching():
    texts = [f"document number {i} " * (i + 1) for i in range(40)]
    hasher = MinHasher(64, 3, seed=3)
    whole = hasher.signatures(texts)
    parts = np.vstack([hasher.signatures(texts[i:i + 7]) for i in range(0, 40, 7)])
    assert np.array_equal(whole, parts)
    assert np.array_equal(whole, MinHasher(64, 3, seed=3).signatures(texts))
    assert not np.array_equal(whole, MinHasher(64, 3, seed=4).signatures(texts))


def test_long_document_spanning_slabs():
    long_text = "".join(chr(97 + (i * 7919) % 26) for i in range(20_000))
    hasher = MinHasher(128)
    sig = hasher.signatures([long_text, "short", long_text])
    assert np.array_equal(sig[0], sig[2]) and not np.array_equal(sig[0], sig[1])


def test_lsh_params_are_derived_from_the_threshold():
    bands, rows = lsh_params(0.8, 128, 0.98)
    assert bands * rows <= 128
    assert candidate_probability(0.8, bands, rows) >= 0.98
    assert candidate_probability(0.8, 128 // (rows + 1), rows + 1) < 0.98  # the most rows that keep recall
    assert candidate_probability(0.5, bands, rows) < 0.2
    assert lsh_params(0.5, 128)[1] < rows


def test_band_keys_shape_and_band_separation():
    sig = MinHasher(128).signatures(["same text here", "same text here", "other words"])
    keys = band_keys(sig, 16, 8)
    assert keys.shape == (3, 16)
    assert np.array_equal(keys[0], keys[1]) and not np.array_equal(keys[0], keys[2])
    same_values = np.zeros((1, 16), dtype=np.uint32)
    k2 = band_keys(same_values, 2, 8)
    assert k2[0, 0] != k2[0, 1]  # equal band values in different bands never share a bucket


def test_candidate_pairs_groups_equal_keys():
    keys = np.array([[1, 5], [1, 6], [2, 6], [3, 7]], dtype=np.uint64)
    assert candidate_pairs(keys) == {(0, 1), (1, 2)}


def test_exact_key_normalises_case_and_whitespace():
    assert exact_key("Hello   World\n") == exact_key("hello world")
    assert exact_key("hello world") != exact_key("hello worlds")


def test_keeper_is_highest_score_then_smallest_id():
    assert sorted(["b", "a", "c"], key=lambda i: rank_key(i, {"a": 5.0, "b": 9.0, "c": 9.0}[i])) == ["b", "c", "a"]
    assert rank_key("z", 1.0) < rank_key("a", None)
    assert rank_key("a", float("nan")) == rank_key("a", None)


def test_resolve_component_verifies_with_exact_jaccard():
    a = "the cat sat on the mat and looked at the birds outside " * 3
    b = a.replace("birds", "bird")
    c = "completely unrelated text about tax law and accounting rules " * 3
    removals, verified = resolve_component(["a", "b", "c"], [a, b, c], [3.0, 8.0, None],
                                           [("a", "b"), ("a", "c")], 0.8)
    assert verified == 1
    assert [(r.id, r.kept, r.kind) for r in removals] == [("a", "b", "near")]
    assert removals[0].similarity == pytest.approx(spec_jaccard(a, b), abs=1e-4)


def test_dedup_in_memory_finds_planted_duplicates():
    rng = random.Random(1)
    words = [f"tok{i}" for i in range(3000)]
    texts = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(300)]
    ids = [f"r{i}" for i in range(300)]
    planted = {}
    for j in range(30):
        src = texts[j].split()
        src[rng.randrange(len(src))] = "edited"
        texts.append(" ".join(src))
        ids.append(f"d{j}")
        planted[f"d{j}"] = f"r{j}"
    texts.append(texts[100].upper() + "  ")
    ids.append("x0")
    scores = [5.0] * 300 + [9.0] * 30 + [1.0]
    result = dedup_in_memory(ids, texts, scores, threshold=0.8)
    assert result.count("exact") == 1 and result.removals[0].id == "x0" and result.removals[0].kept == "r100"
    near = {r.id: r.kept for r in result.removals if r.kind == "near"}
    assert near == {v: k for k, v in planted.items()}  # higher-scored edited copy kept
    assert all(spec_jaccard(texts[ids.index(a)], texts[ids.index(b)]) >= 0.8 for a, b in near.items())


def test_dedup_rejects_repeated_ids():
    with pytest.raises(ValueError, match="unique"):
        dedup_in_memory(["a", "a"], ["x", "y"])
