"""Linear classifiers over query embeddings: the domain classifier and the escalation detector's core.

Fitted with scikit-learn's logistic regression, stored as plain arrays (no pickle) and
applied with numpy, so the serving process needs neither scikit-learn state nor torch.
"""

from __future__ import annotations

import numpy as np


class LinearClassifier:
    """Multinomial (or binary) logistic regression as arrays.

    Args:
        classes: class names in column order.
        coef: ``(C, E)`` weights (``(1, E)`` for two classes, scoring ``classes[1]``).
        intercept: ``(C,)`` biases.
    """

    def __init__(self, classes: list[str], coef: np.ndarray, intercept: np.ndarray):
        self.classes = list(classes)
        self.coef, self.intercept = np.asarray(coef, np.float32), np.asarray(intercept, np.float32)

    @classmethod
    def fit(cls, x: np.ndarray, labels: list[str], c: float = 1.0, seed: int = 0,
            balanced: bool = False) -> LinearClassifier:
        """Fit on ``(n, E)`` features and string labels.

        A single class gives a constant classifier (every row gets that class with probability 1).
        """
        names = sorted(set(labels))
        if len(names) == 1:
            return cls(names, np.zeros((1, x.shape[1])), np.zeros(1))
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, max_iter=2000, random_state=seed,
                                   class_weight="balanced" if balanced else None).fit(x, labels)
        return cls([str(k) for k in model.classes_], model.coef_, model.intercept_)

    def proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, C)`` class probabilities."""
        n = x.shape[0]
        if len(self.classes) == 1:
            return np.ones((n, 1), np.float32)
        z = x.astype(np.float32) @ self.coef.T + self.intercept
        if len(self.classes) == 2:
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> list[str]:
        """Most probable class per row."""
        return [self.classes[i] for i in self.proba(x).argmax(axis=1)]

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Tensors to store (``<prefix>.coef``, ``<prefix>.intercept``)."""
        return {f"{prefix}.coef": self.coef, f"{prefix}.intercept": self.intercept}

    @classmethod
    def from_arrays(cls, classes: list[str], arrays: dict[str, np.ndarray], prefix: str) -> LinearClassifier:
        return cls(classes, arrays[f"{prefix}.coef"], arrays[f"{prefix}.intercept"])
