"""Escalation detector: does a follow-up message say the previous answer failed?

("that's wrong", "try again", "never mind", frustration.) A logistic regression over the
offline sentence embedding of the latest user turn, trained on a labelled set written
for the project (``cogumi/route/data/escalation.jsonl``: ``text``, ``label`` 1 =
dissatisfied, ``split`` train/test) or on the user's own file in the same format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cogumi.errors import CogumiError
from cogumi.models.inference import Message
from cogumi.route.classifiers import LinearClassifier

PACKAGED_ESCALATION_SET = Path(__file__).resolve().parent / "data" / "escalation.jsonl"


def load_escalation_set(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows ``{text, label, split}`` of a labelled escalation set.

    Args:
        path: a .jsonl file; None for the packaged set.

    Raises:
        CogumiError: missing file, bad JSON, a row without text/label, or a split without both labels.
    """
    p = Path(path) if path else PACKAGED_ESCALATION_SET
    where = "router.escalation.data"
    if not p.is_file():
        raise CogumiError(f"escalation set {p} does not exist", where, "point it at a .jsonl file or leave it empty")
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append({"text": str(row["text"]), "label": int(row["label"]),
                         "split": str(row.get("split", "train"))})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CogumiError(f"line {n} of {p} is not a JSON object with text and label ({exc.__class__.__name__})",
                              where, 'write lines like {"text": "that\'s wrong", "label": 1, "split": "train"}'
                              ) from None
    for split in ("train", "test"):
        labels = {r["label"] for r in rows if r["split"] == split}
        if labels != {0, 1}:
            raise CogumiError(f"the '{split}' split of {p} has labels {sorted(labels)}; it needs both 0 and 1",
                              where, "label rows 1 (dissatisfied) and 0 (not), with split train and test")
    return rows


def follow_up(messages: list[Message]) -> str | None:
    """The latest user turn when it follows an assistant answer (else None: nothing to escalate)."""
    if len(messages) < 2 or messages[-1].get("role") != "user":
        return None
    if not any(m.get("role") == "assistant" for m in messages[:-1]):
        return None
    return messages[-1].get("content") or ""


@dataclass
class EscalationDetector:
    """Probability that a follow-up is dissatisfied.

    Attributes:
        classifier: binary :class:`LinearClassifier` over embeddings (classes ``"0"``, ``"1"``).
        threshold: flag at or above this probability.
    """

    classifier: LinearClassifier
    threshold: float = 0.5

    @classmethod
    def fit(cls, emb: np.ndarray, labels: list[int], c: float = 4.0, threshold: float = 0.5,
            seed: int = 0) -> EscalationDetector:
        """Fit on embeddings of labelled messages (classes balanced)."""
        return cls(LinearClassifier.fit(emb, [str(v) for v in labels], c=c, seed=seed, balanced=True), threshold)

    def proba(self, emb: np.ndarray) -> np.ndarray:
        """``(n,)`` dissatisfaction probabilities."""
        p = self.classifier.proba(emb)
        return p[:, self.classifier.classes.index("1")] if "1" in self.classifier.classes else np.zeros(len(emb))

    def evaluate(self, emb: np.ndarray, labels: list[int]) -> dict[str, float]:
        """Accuracy, precision, recall and counts at the threshold."""
        y = np.asarray(labels, int)
        pred = (self.proba(emb) >= self.threshold).astype(int)
        tp, fp = int(((pred == 1) & (y == 1)).sum()), int(((pred == 1) & (y == 0)).sum())
        fn, tn = int(((pred == 0) & (y == 1)).sum()), int(((pred == 0) & (y == 0)).sum())
        return {"accuracy": (tp + tn) / len(y) if len(y) else 0.0,
                "precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
                "tp": tp, "fp": fp, "fn": fn, "tn": tn, "rows": int(len(y))}


def train_escalation(rows: list[dict], emb: np.ndarray, c: float = 4.0, threshold: float = 0.5, seed: int = 0
                     ) -> tuple[EscalationDetector, dict]:
    """Fit on the ``train`` split and measure on the held-out ``test`` split.

    Args:
        rows: from :func:`load_escalation_set`.
        emb: ``(len(rows), E)`` embeddings of the rows' texts.
        c, threshold, seed: classifier settings.

    Returns:
        (detector, ``{"train": metrics, "test": metrics, "test_errors": [...]}``).
    """
    tr = [i for i, r in enumerate(rows) if r["split"] == "train"]
    te = [i for i, r in enumerate(rows) if r["split"] == "test"]
    y_tr, y_te = [rows[i]["label"] for i in tr], [rows[i]["label"] for i in te]
    det = EscalationDetector.fit(emb[tr], y_tr, c, threshold, seed)
    probs = det.proba(emb[te])
    errors = [{"text": rows[i]["text"], "label": rows[i]["label"], "prob": round(float(p), 3)}
              for i, p in zip(te, probs) if (p >= threshold) != bool(rows[i]["label"])]
    return det, {"train": det.evaluate(emb[tr], y_tr), "test": det.evaluate(emb[te], y_te), "test_errors": errors}
