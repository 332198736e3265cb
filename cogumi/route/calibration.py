"""Probability calibration of the router's logit: temperature scaling, Platt scaling, ECE, reliability plots.

Both calibrators map a raw logit ``z`` to a probability: temperature scaling
``sigmoid(z / T)`` (Guo et al. 2017, one parameter, keeps the ranking) and Platt
scaling ``sigmoid(a z + b)`` (Platt 1999, with his smoothed targets so small
validation sets do not drive it to 0/1). ECE here is the binary calibration error
of the predicted probability: equal-width bins over [0, 1], ``|mean p - share of
positives|`` weighted by the bin's share of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    z = np.asarray(z, dtype=np.float64)
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


def _nll(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of positive-class probabilities.

    Args:
        probs: predicted P(label = 1), shape ``(n,)``.
        labels: 0/1 labels.
        bins: equal-width bins over [0, 1].

    Returns:
        ECE in [0, 1] (0.0 for no rows).
    """
    probs, labels = np.asarray(probs, float), np.asarray(labels, float)
    if len(probs) == 0:
        return 0.0
    idx = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(probs[m].mean() - labels[m].mean())
    return float(total)


def reliability_table(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per-bin ``{lo, hi, count, mean_prob, positive_rate}`` (empty bins included with count 0)."""
    probs, labels = np.asarray(probs, float), np.asarray(labels, float)
    idx = np.minimum((probs * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "count": int(m.sum()),
                    "mean_prob": float(probs[m].mean()) if m.any() else float("nan"),
                    "positive_rate": float(labels[m].mean()) if m.any() else float("nan")})
    return out


@dataclass
class Calibrator:
    """A fitted logit -> probability map.

    Attributes:
        method: ``temperature``, ``platt`` or ``none``.
        temperature: T of temperature scaling (1.0 otherwise).
        a, b: Platt's slope and intercept (1, 0 otherwise).
    """

    method: str = "none"
    temperature: float = 1.0
    a: float = 1.0
    b: float = 0.0
    fit_info: dict[str, float] = field(default_factory=dict)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64)
        if self.method == "temperature":
            return sigmoid(z / self.temperature)
        if self.method == "platt":
            return sigmoid(self.a * z + self.b)
        return sigmoid(z)

    def params(self) -> dict[str, float | str]:
        """JSON-ready parameters."""
        return {"method": self.method, "temperature": self.temperature, "a": self.a, "b": self.b}

    @classmethod
    def from_params(cls, p: dict) -> Calibrator:
        return cls(str(p["method"]), float(p["temperature"]), float(p["a"]), float(p["b"]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Temperature ``T`` in [0.05, 50] minimising the NLL of ``sigmoid(z / T)``."""
    z, y = np.asarray(logits, float), np.asarray(labels, float)
    res = minimize(lambda v: _nll(sigmoid(z / np.exp(v[0])), y), x0=[0.0], method="L-BFGS-B",
                   bounds=[(np.log(0.05), np.log(50.0))])
    t = float(np.exp(res.x[0]))
    return Calibrator("temperature", temperature=t, fit_info={"nll": float(res.fun)})


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Platt scaling ``sigmoid(a z + b)`` fitted to Platt's smoothed targets."""
    z, y = np.asarray(logits, float), np.asarray(labels, float)
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    t = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    res = minimize(lambda v: _nll(sigmoid(v[0] * z + v[1]), t), x0=[1.0, 0.0], method="L-BFGS-B",
                   bounds=[(-100.0, 100.0), (-100.0, 100.0)])
    a, b = (float(v) for v in res.x)
    return Calibrator("platt", a=a, b=b, fit_info={"nll": _nll(sigmoid(a * z + b), y)})


def fit_calibrator(logits: np.ndarray, labels: np.ndarray, method: str = "auto") -> tuple[Calibrator, dict]:
    """Fit the requested calibrator on validation logits.

    Args:
        logits: raw router logits of the validation rows.
        labels: their 0/1 labels.
        method: ``auto`` (lower validation NLL of the two), ``temperature``, ``platt`` or ``none``.

    Returns:
        (chosen calibrator, ``{"temperature": params, "platt": params, "val_nll": {...}}``).
    """
    temp, platt = fit_temperature(logits, labels), fit_platt(logits, labels)
    none = Calibrator("none")
    nll = {"none": _nll(none(logits), labels), "temperature": _nll(temp(logits), labels),
           "platt": _nll(platt(logits), labels)}
    chosen = {"temperature": temp, "platt": platt, "none": none}
    if method == "auto":
        method = min(("temperature", "platt"), key=lambda m: nll[m])
    return chosen[method], {"temperature": temp.params(), "platt": platt.params(), "val_nll": nll}


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], bins: int = 10,
                        title: str = "Router reliability") -> bytes:
    """A reliability diagram PNG: observed positive rate against mean predicted probability.

    Args:
        curves: ``{label: (probs, labels)}``, e.g. raw / temperature / platt on the test split.
        bins: equal-width bins.
        title: figure title.

    Returns:
        The PNG bytes.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect")
    for name, (p, y) in curves.items():
        tab = [r for r in reliability_table(p, y, bins) if r["count"]]
        ax.plot([r["mean_prob"] for r in tab], [r["positive_rate"] for r in tab], marker="o",
                label=f"{name} (ECE {ece(p, y, bins):.3f})")
        hx.hist(p, bins=bins, range=(0, 1), histtype="step", label=name)
    ax.set_ylabel("observed share of label 1")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    hx.set_xlabel("predicted probability")
    hx.set_ylabel("rows")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
