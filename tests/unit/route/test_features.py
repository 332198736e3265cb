"""Confidence features from token logprobs, the input layout, projection and standardisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cogumi.errors import CogumiError
from cogumi.models.inference import TokenLogprob
from cogumi.route.features import (
    CONFIDENCE_KEYS,
    FeatureLayout,
    Projection,
    Standardiser,
    assemble,
    confidence_features,
    confidence_matrix,
)


def test_confidence_features_from_logprobs_with_alternatives():
    toks = [TokenLogprob("a", math.log(0.5), {"a": math.log(0.5), "b": math.log(0.5)}),
            TokenLogprob("c", math.log(0.9), {"c": math.log(0.9), "d": math.log(0.1)})]
    f = confidence_features(toks)
    assert f["mean_logprob"] == pytest.approx((math.log(0.5) + math.log(0.9)) / 2)
    assert f["min_logprob"] == pytest.approx(math.log(0.5))
    h2 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert f["entropy"] == pytest.approx((math.log(2) + h2) / 2)
    assert f["length"] == pytest.approx(math.log(3))


def test_entropy_is_missing_without_alternatives_and_minus_inf_is_clipped():
    f = confidence_features([TokenLogprob("a", -0.1), TokenLogprob("b", float("-inf"))])
    assert math.isnan(f["entropy"]) and f["min_logprob"] == -30.0
    empty = confidence_features(None)
    assert empty["length"] == 0.0 and math.isnan(empty["entropy"])


def test_layout_leaves_room_for_the_projection():
    lay = FeatureLayout(128, ["code", "reasoning", "automation"])
    assert lay.proj_dim == 121 and lay.confidence_slice == slice(121, 125)
    with pytest.raises(CogumiError, match="no room"):
        FeatureLayout(16, [f"d{i}" for i in range(12)]).check()


def test_projection_pads_when_few_rows_and_assemble_keeps_nans_for_pre_route():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 384)).astype(np.float32)
    proj = Projection.fit(emb, 121)
    out = proj(emb)
    assert out.shape == (6, 121) and proj.fitted_components == 5 and np.all(out[:, 5:] == 0)
    lay = FeatureLayout(128, ["a", "b", "c"])
    x = assemble(lay, out, None, np.full((6, 3), 1 / 3))
    assert x.shape == (6, 128) and np.isnan(x[:, lay.confidence_slice]).all()


def test_standardiser_shares_one_scale_over_the_projection_and_imputes_nans():
    rng = np.random.default_rng(1)
    x = np.c_[rng.normal(0, 3, (500, 1)), rng.normal(0, 1, (500, 1)), rng.normal(5, 2, (500, 1))]
    st = Standardiser.fit(x, shared=slice(0, 2))
    z = st(x)
    assert np.var(z[:, 0]) / np.var(z[:, 1]) == pytest.approx(np.var(x[:, 0]) / np.var(x[:, 1]))  # ratio kept
    assert np.var(z[:, 0]) + np.var(z[:, 1]) == pytest.approx(1)
    assert np.std(z[:, 2]) == pytest.approx(1, rel=0.05)
    y = x[:2].copy()
    y[0, 2] = np.nan
    assert st(y)[0, 2] == 0.0


def test_confidence_matrix_orders_columns():
    m = confidence_matrix([{k: float(i) for i, k in enumerate(CONFIDENCE_KEYS)}])
    assert m.tolist() == [[0.0, 1.0, 2.0, 3.0]]
