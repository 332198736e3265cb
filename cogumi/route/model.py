"""The fitted router as arrays: projection, standardiser, two MLPs, calibrators, classifiers.

:class:`RouterModel` holds everything but the embedding model and scores already
embedded queries; :mod:`cogumi.route.artifact` wraps it for serving. On disk it is two
files in the router folder: ``router.json`` (layout, label maps, calibration,
thresholds, versions, metrics) and ``weights.safetensors`` (every array). No pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cogumi.errors import ArtifactError
from cogumi.route.calibration import Calibrator
from cogumi.route.classifiers import LinearClassifier
from cogumi.route.escalation import EscalationDetector
from cogumi.route.features import CONFIDENCE_KEYS, FeatureLayout, Projection, Standardiser, assemble
from cogumi.route.mlp import RouterMLP

FORMAT_VERSION = 1
ROUTER_JSON = "router.json"
WEIGHTS = "weights.safetensors"
MODES = ("cascade", "pre")
# What the MLP's positive class means; ``confidence`` (kept base) is 1 - P(label 1).
LABELS = {"0": "base", "1": "modifier"}


@dataclass
class RouterModel:
    """A fitted router without its embedding model.

    Attributes:
        layout: input columns (projection | confidence | domain indicators).
        projection: PCA of query embeddings.
        standardiser: per-column scaling of the assembled input.
        mlps: ``{"cascade": net over all columns, "pre": net with confidence columns zeroed}``.
        calibrators: per mode, raw logit -> calibrated P(modifier better).
        domains: domain classifier over raw query embeddings.
        escalation: the dissatisfaction detector.
        threshold: keep the base when confidence >= this (the operating threshold).
        info: everything else written to ``router.json`` (embedding model, metrics, versions...).
    """

    layout: FeatureLayout
    projection: Projection
    standardiser: Standardiser
    mlps: dict[str, RouterMLP]
    calibrators: dict[str, Calibrator]
    domains: LinearClassifier
    escalation: EscalationDetector
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    def inputs(self, emb: np.ndarray, confidence: np.ndarray | None) -> np.ndarray:
        """Standardised router input for embeddings ``(n, E)`` and confidence ``(n, 4)`` (None: pre-route)."""
        domain_probs = self.domains.proba(emb)
        x = self.standardiser(assemble(self.layout, self.projection(emb), confidence, domain_probs))
        if confidence is None:
            x[:, self.layout.confidence_slice] = 0.0
        return x

    def modifier_probability(self, emb: np.ndarray, confidence: np.ndarray | None) -> np.ndarray:
        """Calibrated P(a modifier beats the base) per row; the mode follows ``confidence``."""
        mode = "pre" if confidence is None else "cascade"
        logits = self.mlps[mode].logits(self.inputs(emb, confidence))
        return self.calibrators[mode](logits)

    # ------------------------------------------------------------------ persistence

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, named for ``weights.safetensors``."""
        out = {"projection.mean": self.projection.mean, "projection.components": self.projection.components,
               "standardiser.mean": self.standardiser.mean, "standardiser.std": self.standardiser.std,
               **self.domains.arrays("domains"), **self.escalation.classifier.arrays("escalation")}
        for mode, net in self.mlps.items():
            out.update({f"mlp.{mode}.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()})
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}

    def config(self) -> dict[str, Any]:
        """The JSON half of the artifact."""
        return {"format_version": FORMAT_VERSION, "input_dim": self.layout.input_dim,
                "layout": {"projection": self.layout.proj_dim, "confidence": list(CONFIDENCE_KEYS),
                           "domains": self.layout.domains,
                           "projection_components_fitted": self.projection.fitted_components},
                "hidden": [m.out_features for m in self.mlps["cascade"].net if isinstance(m, torch.nn.Linear)][:-1],
                "labels": LABELS, "domains": self.domains.classes,
                "escalation": {"classes": self.escalation.classifier.classes, "threshold": self.escalation.threshold},
                "calibration": {m: c.params() for m, c in self.calibrators.items()},
                "threshold": self.threshold, **self.info}

    def save(self, write_text, write_bytes) -> None:
        """Write ``router.json`` and ``weights.safetensors`` through the given writers (relpath, data)."""
        from safetensors.numpy import save

        write_bytes(WEIGHTS, save(self.arrays()))
        write_text(ROUTER_JSON, json.dumps(self.config(), indent=2, sort_keys=True, default=_jsonable))

    @classmethod
    def from_files(cls, config_text: str, weights: bytes, where: str) -> RouterModel:
        """Rebuild from the two files.

        Raises:
            ArtifactError: unreadable files, an unknown format version, or missing arrays.
        """
        from safetensors.numpy import load

        try:
            cfg = json.loads(config_text)
            arrays = load(weights)
        except Exception as exc:  # noqa: BLE001
            raise ArtifactError(f"the router artifact is corrupt ({exc.__class__.__name__}: {exc})", where,
                                "rerun `cogumi router --force`") from None
        if cfg.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"router artifact format {cfg.get('format_version')} is not {FORMAT_VERSION}",
                                where, "rebuild it with this version: `cogumi router --force`")
        try:
            layout = FeatureLayout(int(cfg["input_dim"]), list(cfg["layout"]["domains"]))
            mlps = {}
            for mode in MODES:
                net = RouterMLP(layout.input_dim, list(cfg["hidden"]))
                prefix = f"mlp.{mode}."
                net.load_state_dict({k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in arrays.items()
                                     if k.startswith(prefix)})
                mlps[mode] = net.eval()
            esc = EscalationDetector(LinearClassifier.from_arrays(cfg["escalation"]["classes"], arrays, "escalation"),
                                     float(cfg["escalation"]["threshold"]))
            info = {k: v for k, v in cfg.items() if k not in _STRUCTURAL}
            return cls(layout, Projection(arrays["projection.mean"], arrays["projection.components"], layout.proj_dim),
                       Standardiser(arrays["standardiser.mean"], arrays["standardiser.std"]), mlps,
                       {m: Calibrator.from_params(cfg["calibration"][m]) for m in MODES},
                       LinearClassifier.from_arrays(cfg["domains"], arrays, "domains"), esc,
                       float(cfg["threshold"]), info)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ArtifactError(f"the router artifact is incomplete ({exc.__class__.__name__}: {exc})", where,
                                "rerun `cogumi router --force`") from None


_STRUCTURAL = {"format_version", "input_dim", "layout", "hidden", "labels", "domains", "escalation",
               "calibration", "threshold"}


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
