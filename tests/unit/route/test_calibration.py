"""Calibration: ECE, temperature and Platt scaling on deliberately mis-calibrated synthetic sets."""

from __future__ import annotations

import numpy as np
import pytest

from cogumi.route.calibration import (
    Calibrator,
    ece,
    fit_calibrator,
    fit_platt,
    fit_temperature,
    reliability_diagram,
    reliability_table,
    sigmoid,
)


def miscalibrated(n: int, scale: float, shift: float, seed: int):
    """Labels drawn from true probabilities; logits distorted to ``scale * logit(p) + shift``."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    y = (rng.uniform(size=n) < p).astype(int)
    return scale * np.log(p / (1 - p)) + shift, y


def test_ece_of_perfect_and_of_constant_predictions():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20000)
    y = (rng.uniform(size=20000) < p).astype(int)
    assert ece(p, y) < 0.02
    assert ece(np.full(100, 0.9), np.r_[np.ones(50), np.zeros(50)]) == pytest.approx(0.4)
    assert ece(np.array([]), np.array([])) == 0.0


def test_temperature_scaling_undoes_overconfidence_and_lowers_ece():
    z_val, y_val = miscalibrated(3000, scale=3.0, shift=0.0, seed=1)
    z_test, y_test = miscalibrated(3000, scale=3.0, shift=0.0, seed=2)
    cal = fit_temperature(z_val, y_val)
    assert cal.temperature == pytest.approx(3.0, rel=0.2)
    before, after = ece(sigmoid(z_test), y_test), ece(cal(z_test), y_test)
    assert before > 0.08 and after < 0.03 and after < before / 3


def test_platt_scaling_fixes_a_shifted_and_overconfident_model():
    z_val, y_val = miscalibrated(3000, scale=2.5, shift=1.5, seed=3)
    z_test, y_test = miscalibrated(3000, scale=2.5, shift=1.5, seed=4)
    cal = fit_platt(z_val, y_val)
    assert cal.a == pytest.approx(1 / 2.5, rel=0.2) and cal.b == pytest.approx(-1.5 / 2.5, abs=0.2)
    assert ece(sigmoid(z_test), y_test) > 0.1
    assert ece(cal(z_test), y_test) < 0.03
    # temperature cannot remove a shift; auto picks the calibrator with the lower validation NLL
    chosen, info = fit_calibrator(z_val, y_val, "auto")
    assert chosen.method == "platt" and info["val_nll"]["platt"] < info["val_nll"]["temperature"]


def test_calibrators_round_trip_and_tiny_sets_stay_finite():
    cal = Calibrator.from_params(Calibrator("platt", a=0.5, b=-0.2).params())
    assert cal(np.array([2.0]))[0] == pytest.approx(sigmoid(np.array([0.8]))[0])
    separable = np.array([-3.0, -2.0, 2.0, 3.0]), np.array([0, 0, 1, 1])
    for fit in (fit_temperature, fit_platt):
        p = fit(*separable)(separable[0])
        assert np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))


def test_reliability_diagram_is_a_png_and_the_table_covers_every_bin():
    z, y = miscalibrated(500, 3.0, 0.0, 5)
    png = reliability_diagram({"raw": (sigmoid(z), y), "temperature": (sigmoid(z / 3), y)}, bins=10)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    table = reliability_table(sigmoid(z), y, 10)
    assert len(table) == 10 and sum(r["count"] for r in table) == 500
