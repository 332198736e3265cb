"""Fit the whole router from embedded, featurised rows (pure: no Ray, no files).

Steps: stratified 80/10/10 split; domain classifier and PCA on the training split;
standardised 128-column inputs; the cascade MLP (with confidence) and the pre-route
MLP (query only); calibration on validation; ECE, accuracy and the threshold sweep
on the held-out test split; the escalation detector on its own labelled set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cogumi.route.calibration import Calibrator, ece, fit_calibrator, reliability_diagram
from cogumi.route.classifiers import LinearClassifier
from cogumi.route.config import RouterConfig
from cogumi.route.data import FEATURE_COLUMNS, has_scores
from cogumi.route.escalation import EscalationDetector
from cogumi.route.features import FeatureLayout, Projection, Standardiser, assemble
from cogumi.route.mlp import accuracy, split_indices, train_mlp
from cogumi.route.model import MODES, RouterModel
from cogumi.route.sweep import quality_scores, recommend, sweep, sweep_markdown, sweep_plot


@dataclass
class FitResult:
    """The fitted router plus what the stage writes beside it."""

    model: RouterModel
    metrics: dict[str, Any]
    files: dict[str, bytes | str] = field(default_factory=dict)


def fit_router(rows: list[dict[str, Any]], emb: np.ndarray, escalation: tuple[EscalationDetector, dict],
               cfg: RouterConfig) -> FitResult:
    """Train and evaluate the router.

    Args:
        rows: validated routing rows carrying the four ``base_*`` confidence columns.
        emb: ``(len(rows), E)`` query embeddings.
        escalation: a trained detector and its metrics (:func:`cogumi.route.escalation.train_escalation`).
        cfg: the router section.

    Returns:
        The model, a metrics dict (also the manifest's) and plots/tables to write.
    """
    y = np.array([r["label"] for r in rows], dtype=int)
    dom = [r["domain"] for r in rows]
    tr, va, te = split_indices(y, cfg.mlp.split, cfg.seed)
    domains = LinearClassifier.fit(emb[tr], [dom[i] for i in tr], c=cfg.domain_c, seed=cfg.seed)
    layout = FeatureLayout(cfg.mlp.input_dim, domains.classes)
    layout.check()
    projection = Projection.fit(emb[tr], layout.proj_dim, cfg.seed)
    conf = np.array([[float(r[c]) for c in FEATURE_COLUMNS] for r in rows], dtype=np.float32)
    raw = assemble(layout, projection(emb), conf, domains.proba(emb))
    standardiser = Standardiser.fit(raw[tr], shared=slice(0, layout.proj_dim))
    inputs = {"cascade": standardiser(raw)}
    inputs["pre"] = inputs["cascade"].copy()
    inputs["pre"][:, layout.confidence_slice] = 0.0

    base_q, mod_q, q_source = quality_scores(
        y, *((np.array([r["base_score"] for r in rows]), np.array([r["modifier_score"] for r in rows]))
             if has_scores(rows) else (None, None)))
    mlps, calibrators, curves = {}, {}, {}
    metrics: dict[str, Any] = {}
    sweeps_val, sweeps_test = {}, {}
    files: dict[str, bytes | str] = {}
    for mode in MODES:
        x = inputs[mode]
        res = train_mlp(x[tr], y[tr], x[va], y[va], cfg.mlp, cfg.seed)
        logits = res.model.logits(x)
        cal, cal_info = fit_calibrator(logits[va], y[va], cfg.calibration.method)
        temp, platt = Calibrator.from_params(cal_info["temperature"]), Calibrator.from_params(cal_info["platt"])
        raw_p, p = Calibrator()(logits), cal(logits)
        bins = cfg.calibration.bins
        metrics[mode] = {
            "best_epoch": res.best_epoch, "epochs_run": len(res.history), "calibration": cal.method,
            "calibration_params": cal.params(), "val_nll": cal_info["val_nll"],
            "train_accuracy": accuracy(p[tr], y[tr]), "val_accuracy": accuracy(p[va], y[va]),
            "test_accuracy": accuracy(p[te], y[te]), "test_accuracy_raw": accuracy(raw_p[te], y[te]),
            "test_ece_raw": ece(raw_p[te], y[te], bins), "test_ece_temperature": ece(temp(logits[te]), y[te], bins),
            "test_ece_platt": ece(platt(logits[te]), y[te], bins), "test_ece": ece(p[te], y[te], bins),
            "val_ece_raw": ece(raw_p[va], y[va], bins), "val_ece": ece(p[va], y[va], bins)}
        curves[mode] = {"raw": (raw_p[te], y[te]), "temperature": (temp(logits[te]), y[te]),
                        "platt": (platt(logits[te]), y[te])}
        mlps[mode], calibrators[mode] = res.model, cal
        sweeps_val[mode] = sweep(1 - p[va], y[va], base_q[va], mod_q[va], cfg.sweep_points)
        sweeps_test[mode] = sweep(1 - p[te], y[te], base_q[te], mod_q[te], cfg.sweep_points)
        files[f"reliability_{mode}.png"] = reliability_diagram(
            curves[mode], bins, f"{mode} router, test split ({len(te)} rows)")

    recommended = recommend(sweeps_val["cascade"], cfg.sweep_tolerance)
    operating = recommended if cfg.use_recommended_threshold else cfg.confidence_threshold
    marks = {"operating": operating, "recommended": recommended}
    for mode in MODES:
        p_te = calibrators[mode](mlps[mode].logits(inputs[mode][te]))
        use = (1 - p_te) < operating
        metrics[mode]["operating_accuracy"] = float((use.astype(int) == y[te]).mean())
        metrics[mode]["operating_modifier_share"] = float(use.mean())
    files["sweep.md"] = sweep_markdown(sweeps_test, q_source, f"test split, {len(te)} rows", marks)
    files["sweep.png"] = sweep_plot(sweeps_test, q_source, marks)

    esc_det, esc_metrics = escalation
    dom_te = domains.predict(emb[te])
    metrics.update({
        "rows": {"total": len(rows), "train": len(tr), "val": len(va), "test": len(te),
                 "label_1_share": float(y.mean()), "domains": {d: dom.count(d) for d in sorted(set(dom))}},
        "domain_classifier": {"classes": domains.classes,
                              "test_accuracy": float(np.mean([a == b for a, b in zip(dom_te, [dom[i] for i in te])]))},
        "escalation": {k: v for k, v in esc_metrics.items() if k != "test_errors"},
        "thresholds": {"operating": operating, "recommended": recommended, "configured": cfg.confidence_threshold},
        "quality_source": q_source,
        "projection": {"method": "pca", "components_fitted": projection.fitted_components,
                       "width": layout.proj_dim},
        "targets": targets(metrics["cascade"], cfg, len(te)),
    })
    files["sweep.json"] = _json({"test": sweeps_test, "val": sweeps_val, "quality_source": q_source, **marks})
    files["escalation_errors.json"] = _json(esc_metrics.get("test_errors", []))
    model = RouterModel(layout, projection, standardiser, mlps, calibrators, domains, esc_det, float(operating))
    return FitResult(model, metrics, files)


def targets(cascade: dict[str, Any], cfg: RouterConfig, test_rows: int) -> dict[str, Any]:
    """The spec's Phase 4 targets against what the held-out test split measured."""
    return {"split": "test", "rows": test_rows,
            "router_accuracy": {"target": f"> {cfg.target_accuracy}", "measured": cascade["test_accuracy"],
                                "met": cascade["test_accuracy"] > cfg.target_accuracy},
            "ece": {"target": f"< {cfg.target_ece}", "measured": cascade["test_ece"],
                    "met": cascade["test_ece"] < cfg.target_ece}}


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, sort_keys=True)
