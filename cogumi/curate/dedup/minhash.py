"""Compiled (numba) MinHash signatures over lower-cased character k-grams, LSH banding and exact Jaccard.

Shingles follow the spec's appendix: ``text.lower().strip()`` cut into character
k-grams (k=3). Each k-gram becomes an exact 63-bit code (three 21-bit code
points), is mixed with splitmix64 to 32 bits, and the ``num_perm`` permutations
are the multiplicative family ``h_i(x) = a_i * x mod 2**32`` (``a_i`` odd: a bijection).
Signatures are computed by one compiled loop (numba) per batch: each document's
shingle hashes stay in L1 cache while all ``num_perm`` minima are taken, with no
intermediate ``(num_perm, shingles)`` matrix; that is what makes it tens of times
faster than one ``MinHash.update`` call per shingle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numba
import numpy as np

_U64 = np.uint64
_MASK21 = _U64((1 << 21) - 1)


def normalise(text: str) -> str:
    """The spec's shingling normalisation: lower case, outer whitespace stripped."""
    return text.lower().strip()


def shingle_codes(text: str, k: int = 3) -> np.ndarray:
    """Codes of every character k-gram of ``normalise(text)`` (with repeats), as uint64.

    For ``k <= 3`` a code is exact (code points packed in 21-bit fields), so equal
    codes mean equal shingles; larger ``k`` uses a 64-bit polynomial hash. A text
    shorter than ``k`` is one shingle (the whole text).
    """
    chars = np.frombuffer(normalise(text).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(_U64)
    if len(chars) < k:
        code = _U64(0)
        for c in chars:
            code = (code << _U64(21)) | (c & _MASK21)
        return np.array([code | _U64(1 << 63)], dtype=_U64)  # tagged: never equals a full k-gram
    n = len(chars) - k + 1
    codes: np.ndarray = np.zeros(n, dtype=_U64)
    if k <= 3:
        for j in range(k):
            codes = (codes << _U64(21)) | chars[j:j + n]
        return codes
    for j in range(k):
        codes = codes * _U64(0x100000001B3) + chars[j:j + n]
    return codes


def shingle_set(text: str, k: int = 3) -> np.ndarray:
    """Sorted unique shingle codes: the exact set the Jaccard similarity is defined on."""
    codes = np.sort(shingle_codes(text, k))
    return codes[np.r_[True, codes[1:] != codes[:-1]]] if len(codes) else codes


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique code arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def _mix32(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, high 32 bits: uniform 32-bit hashes of the codes."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    x = x ^ (x >> _U64(31))
    return (x >> _U64(32)).astype(np.uint32)


class MinHasher:
    """``num_perm`` hash permutations, fixed by ``seed`` so every worker agrees.

    Args:
        num_perm: signature length (the spec uses 128).
        k: character n-gram size (3).
        seed: permutation seed; signatures are comparable only under the same seed.
    """

    def __init__(self, num_perm: int = 128, k: int = 3, seed: int = 1):
        self.num_perm, self.k, self.seed = num_perm, k, seed
        rng = np.random.default_rng(seed)
        self.a = (rng.integers(0, 1 << 31, num_perm, dtype=np.uint64) * 2 + 1).astype(np.uint32)[:, None]

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """MinHash signatures of ``texts``.

        Args:
            texts: documents (already joined from the fields to compare).

        Returns:
            ``(len(texts), num_perm)`` uint32 array.
        """
        norm = [normalise(t) for t in texts]
        sizes = np.fromiter((len(t) for t in norm), dtype=np.int64, count=len(norm))
        chars = np.frombuffer("".join(norm).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        out = np.empty((len(norm), self.num_perm), dtype=np.uint32)
        _signature_kernel(chars, sizes, self.a[:, 0].astype(np.uint64), self.k, out)
        return out


@numba.njit(cache=True, nogil=True)
def _signature_kernel(chars, sizes, a, k, out):  # pragma: no cover - compiled; tested through MinHasher
    """``out[d, p] = min over shingles s of d of (a[p] * mix32(code(s))) mod 2**32``.

    Codes and hashes are those of :func:`shingle_codes` and :func:`_mix32`.
    """
    mask21 = np.uint64((1 << 21) - 1)
    mask32 = np.uint64(0xFFFFFFFF)
    hashes = np.empty(max(1, sizes.max()) if len(sizes) else 1, dtype=np.uint64)
    pos = 0
    for d in range(len(sizes)):
        size = sizes[d]
        if size < k:  # the whole text is one tagged shingle
            code = np.uint64(0)
            for j in range(size):
                code = (code << np.uint64(21)) | (np.uint64(chars[pos + j]) & mask21)
            hashes[0] = code | np.uint64(1 << 63)
            n = 1
        else:
            n = size - k + 1
            for s in range(n):
                code = np.uint64(0)
                if k <= 3:
                    for j in range(k):
                        code = (code << np.uint64(21)) | np.uint64(chars[pos + s + j])
                else:
                    for j in range(k):
                        code = code * np.uint64(0x100000001B3) + np.uint64(chars[pos + s + j])
                hashes[s] = code
        for s in range(n):  # splitmix64 finaliser, high 32 bits
            x = hashes[s]
            x = x ^ (x >> np.uint64(30))
            x = x * np.uint64(0xBF58476D1CE4E5B9)
            x = x ^ (x >> np.uint64(27))
            x = x * np.uint64(0x94D049BB133111EB)
            x = x ^ (x >> np.uint64(31))
            hashes[s] = x >> np.uint64(32)
        for p in range(a.shape[0]):
            ap = a[p]
            low = mask32
            for s in range(n):
                v = (ap * hashes[s]) & mask32
                if v < low:
                    low = v
            out[d, p] = low
        pos += size


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal signature slots (the MinHash estimate of Jaccard)."""
    return float(np.mean(sig_a == sig_b))


def candidate_probability(j: float, bands: int, rows: int) -> float:
    """Probability that a pair of Jaccard ``j`` shares at least one band bucket."""
    return 1.0 - (1.0 - j ** rows) ** bands


def lsh_params(threshold: float, num_perm: int, recall_at_threshold: float = 0.98) -> tuple[int, int]:
    """Bands and rows for ``threshold``: the most rows per band (fewest false candidates)
    such that a pair exactly at the threshold still becomes a candidate with
    probability ``recall_at_threshold``. Candidates are verified with exact Jaccard,
    so false candidates cost time, never precision.

    Returns:
        ``(bands, rows)`` with ``bands * rows <= num_perm``.
    """
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if candidate_probability(threshold, bands, rows) >= recall_at_threshold:
            best = (bands, rows)
    return best


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit bucket key per (document, band); the band index is part of the key.

    Returns:
        ``(n, bands)`` uint64 array.
    """
    n = signatures.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    sig = signatures.astype(np.uint64)
    for band in range(bands):
        h = np.full(n, (0x9E3779B97F4A7C15 * (band + 1)) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
        for col in range(band * rows, (band + 1) * rows):
            h = (h ^ sig[:, col]) * _U64(0x100000001B3)
            h ^= h >> _U64(29)
        keys[:, band] = h
    return keys


def exact_key(text: str) -> str:
    """Hash of the whitespace-collapsed, lower-cased text (exact-duplicate key)."""
    canon = " ".join(text.lower().split())
    return hashlib.blake2b(canon.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def join_fields(row: dict, fields: Sequence[str]) -> str:
    """The text compared for duplicates: the fields joined by newlines (missing = empty)."""
    return "\n".join(str(row.get(f) or "") for f in fields)


def expected_false_negative(threshold: float, bands: int, rows: int) -> float:
    """Miss probability for a pair exactly at the threshold (for reports)."""
    return 1.0 - candidate_probability(threshold, bands, rows)

