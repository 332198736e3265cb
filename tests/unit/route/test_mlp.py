"""The router MLP: spec shape, stratified splits, accuracy on a synthetic separable set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cogumi.errors import CogumiError
from cogumi.route.config import MLPSettings
from cogumi.route.mlp import RouterMLP, accuracy, split_indices, train_mlp

# Stated acceptance level: a linearly separable synthetic set (margin 1.5 along 4 of 128 dims).
SEPARABLE_ACCURACY = 0.97


def test_spec_shape_128_64_32_1():
    net = RouterMLP(128, [64, 32])
    dims = [(m.in_features, m.out_features) for m in net.net if isinstance(m, torch.nn.Linear)]
    assert dims == [(128, 64), (64, 32), (32, 1)]
    assert sum(p.numel() for p in net.parameters()) == 128 * 64 + 64 + 64 * 32 + 32 + 32 + 1


def test_split_is_80_10_10_stratified_and_disjoint():
    y = np.array([0] * 700 + [1] * 300)
    tr, va, te = split_indices(y, (0.8, 0.1, 0.1), seed=3)
    assert (len(tr), len(va), len(te)) == (800, 100, 100)
    assert not set(tr) & set(va) and not set(va) & set(te) and not set(tr) & set(te)
    assert y[va].mean() == pytest.approx(0.3) and y[te].mean() == pytest.approx(0.3)


def test_split_refuses_tiny_or_single_class_sets():
    with pytest.raises(CogumiError, match="both labels"):
        split_indices(np.ones(50, dtype=int), (0.8, 0.1, 0.1))
    with pytest.raises(CogumiError, match="at least 10"):
        split_indices(np.array([0, 1] * 4), (0.8, 0.1, 0.1))


def test_router_mlp_learns_a_separable_set():
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.normal(size=(n, 128)).astype(np.float32)
    w = np.zeros(128)
    w[[3, 40, 90, 125]] = 1.0
    score = x @ w
    keep = np.abs(score) > 1.5  # a margin: separable
    x, y = x[keep], (score[keep] > 0).astype(int)
    tr, va, te = split_indices(y, (0.8, 0.1, 0.1))
    res = train_mlp(x[tr], y[tr], x[va], y[va], MLPSettings(epochs=40, patience=10))
    p = 1 / (1 + np.exp(-res.model.logits(x[te])))
    assert accuracy(p, y[te]) >= SEPARABLE_ACCURACY
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
