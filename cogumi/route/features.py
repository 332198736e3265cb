"""Router input features: base-answer confidence, a projected query embedding, domain indicators.

The spec's 128-dimension input is laid out as ``[projection (P) | confidence (4) | domains (D)]``
with ``P = input_dim - 4 - D``. The projection (PCA fitted on the training queries) and
the per-column standardisation are fitted once and stored in the router artifact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cogumi.errors import CogumiError
from cogumi.models.inference import Generation, TokenLogprob

CONFIDENCE_KEYS = ("mean_logprob", "min_logprob", "entropy", "length")
LOGPROB_FLOOR = -30.0  # -inf logprobs (impossible tokens) are clipped here


def confidence_features(logprobs: Sequence[TokenLogprob] | None) -> dict[str, float]:
    """Confidence of one generated answer from its token logprobs.

    - ``mean_logprob`` / ``min_logprob``: of the chosen tokens (clipped at -30);
    - ``entropy``: mean over tokens of the entropy (nats) of the top-k alternatives, renormalised;
      NaN when no token came with at least two alternatives (imputed later);
    - ``length``: ``log(1 + tokens)``.

    Args:
        logprobs: ``Generation.logprobs`` (None or empty: no tokens).

    Returns:
        The four features (an empty answer gets mean/min 0, entropy NaN, length 0).
    """
    lps = [max(float(t.logprob), LOGPROB_FLOOR) if t.logprob is not None and not math.isnan(t.logprob)
           else LOGPROB_FLOOR for t in logprobs or []]
    ents = [e for e in (_top_entropy(t) for t in logprobs or []) if e is not None]
    return {"mean_logprob": float(np.mean(lps)) if lps else 0.0,
            "min_logprob": float(min(lps)) if lps else 0.0,
            "entropy": float(np.mean(ents)) if ents else float("nan"),
            "length": math.log1p(len(lps))}


def generation_features(gen: Generation) -> dict[str, float]:
    """:func:`confidence_features` of a :class:`Generation` (its ``logprobs``)."""
    return confidence_features(gen.logprobs)


def _top_entropy(tok: TokenLogprob) -> float | None:
    top = dict(tok.top or {})
    if tok.token not in top and tok.logprob is not None:
        top[tok.token] = tok.logprob
    vals = np.array([max(v, LOGPROB_FLOOR) for v in top.values() if v is not None and not math.isnan(v)])
    if len(vals) < 2:
        return None
    p = np.exp(vals - vals.max())
    p /= p.sum()
    return float(-(p * np.log(np.clip(p, 1e-12, None))).sum())


@dataclass
class FeatureLayout:
    """Column layout of the router input.

    Attributes:
        input_dim: total columns (128 in the spec).
        domains: the domain names, in indicator order.
    """

    input_dim: int
    domains: list[str]

    @property
    def proj_dim(self) -> int:
        return self.input_dim - len(CONFIDENCE_KEYS) - len(self.domains)

    @property
    def confidence_slice(self) -> slice:
        return slice(self.proj_dim, self.proj_dim + len(CONFIDENCE_KEYS))

    def check(self) -> None:
        """Raises CogumiError when the domains leave no room for the query projection."""
        if self.proj_dim < 1:
            raise CogumiError(f"router input of {self.input_dim} columns has no room for the query projection "
                              f"with {len(self.domains)} domains", "router.mlp.input_dim",
                              f"raise input_dim above {len(CONFIDENCE_KEYS) + len(self.domains)}")


class Projection:
    """PCA of query embeddings to ``dim`` columns (zero-padded when fewer components can be fitted).

    Args:
        mean: ``(E,)`` embedding mean.
        components: ``(k, E)`` principal axes, ``k <= dim``.
        dim: output width.
    """

    def __init__(self, mean: np.ndarray, components: np.ndarray, dim: int):
        self.mean, self.components, self.dim = mean.astype(np.float32), components.astype(np.float32), dim

    @classmethod
    def fit(cls, emb: np.ndarray, dim: int, seed: int = 0) -> Projection:
        """Fit PCA on training embeddings ``(n, E)``; ``k = min(dim, n - 1, E)`` components (at least 1)."""
        from sklearn.decomposition import PCA

        k = max(1, min(dim, emb.shape[0] - 1, emb.shape[1]))
        pca = PCA(n_components=k, random_state=seed).fit(emb)
        return cls(pca.mean_, pca.components_, dim)

    @property
    def fitted_components(self) -> int:
        return int(self.components.shape[0])

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        out = np.zeros((emb.shape[0], self.dim), dtype=np.float32)
        out[:, :self.fitted_components] = (emb - self.mean) @ self.components.T
        return out


def confidence_matrix(rows: Sequence[dict[str, float]]) -> np.ndarray:
    """``(n, 4)`` array of :data:`CONFIDENCE_KEYS` (NaN where missing)."""
    return np.array([[float(r.get(k, float("nan"))) for k in CONFIDENCE_KEYS] for r in rows],
                    dtype=np.float32).reshape(len(rows), len(CONFIDENCE_KEYS))


def assemble(layout: FeatureLayout, projected: np.ndarray, confidence: np.ndarray | None,
             domain_probs: np.ndarray) -> np.ndarray:
    """Concatenate the three blocks into ``(n, input_dim)``; ``confidence=None`` leaves NaNs (pre-route)."""
    n = projected.shape[0]
    conf = np.full((n, len(CONFIDENCE_KEYS)), np.nan, np.float32) if confidence is None else confidence
    x = np.concatenate([projected, conf, domain_probs.astype(np.float32)], axis=1)
    if x.shape[1] != layout.input_dim:
        raise ValueError(f"assembled {x.shape[1]} columns, layout says {layout.input_dim}")
    return x


class Standardiser:
    """Per-column ``(x - mean) / std`` fitted on training rows; NaNs (missing values) become 0 (the mean).

    The query projection block shares one scale (the square root of its total variance), so the
    whole embedding weighs like one unit-variance feature: with few training rows the network
    cannot memorise them through a hundred equally loud noise directions, and the leading
    principal components keep their lead.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)

    @classmethod
    def fit(cls, x: np.ndarray, shared: slice | None = None) -> Standardiser:
        """Fit on ``(n, d)`` training features ignoring NaNs; ``shared`` columns get one common scale.

        Constant columns get std 1.
        """
        with np.errstate(all="ignore"):
            mean = np.nan_to_num(np.nanmean(x, axis=0), nan=0.0)
            var = np.nan_to_num(np.nanvar(x, axis=0), nan=1.0)
        std = np.sqrt(var)
        if shared is not None:
            std[shared] = np.sqrt(var[shared].sum())
        std[std < 1e-6] = 1.0
        return cls(mean, std)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.nan_to_num((x - self.mean) / self.std, nan=0.0).astype(np.float32)
