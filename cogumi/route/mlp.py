"""The router network (spec: 128 -> 64 -> 32 -> 1, BCE) and its training on a train/val/test split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cogumi.route.config import MLPSettings
from cogumi.route.data import require_trainable
from cogumi.route.threads import one_thread


class RouterMLP(nn.Module):
    """Feed-forward binary classifier returning one logit per row.

    Args:
        input_dim: input columns.
        hidden: hidden widths (the spec: [64, 32]).
        dropout: dropout after each hidden ReLU.
    """

    def __init__(self, input_dim: int, hidden: list[int], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Eval-mode logits of a numpy batch."""
        self.eval()
        with torch.no_grad(), one_thread():
            return self(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(np.float64)


def split_indices(labels: np.ndarray, shares: tuple[float, float, float], seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/val/test indices; each split gets at least one row of each class when possible.

    Raises:
        CogumiError: fewer than 10 rows, or a single class.
    """
    labels = np.asarray(labels).astype(int)
    require_trainable(labels.tolist(), "routing set")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n = len(idx)
        n_val = max(1, round(n * shares[1])) if n >= 3 else 0
        n_test = max(1, round(n * shares[2])) if n >= 3 else 0
        n_train = n - n_val - n_test
        parts[0] += idx[:n_train].tolist()
        parts[1] += idx[n_train:n_train + n_val].tolist()
        parts[2] += idx[n_train + n_val:].tolist()
    return tuple(np.array(sorted(p), dtype=int) for p in parts)  # type: ignore[return-value]


@dataclass
class TrainResult:
    """A trained router network and its learning curve."""

    model: RouterMLP
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def train_mlp(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
              settings: MLPSettings, seed: int = 0) -> TrainResult:
    """Train with AdamW on BCE-with-logits, keeping the best validation epoch.

    Args:
        x_train, y_train: standardised training features and 0/1 labels.
        x_val, y_val: validation split (early stopping on its loss).
        settings: widths, dropout, optimiser and stopping settings.
        seed: torch seed.

    Returns:
        The best-validation-loss model (eval mode) and per-epoch losses.
    """
    with one_thread():
        return _train(x_train, y_train, x_val, y_val, settings, seed)


def _train(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
           settings: MLPSettings, seed: int) -> TrainResult:
    torch.manual_seed(seed)
    model = RouterMLP(x_train.shape[1], list(settings.hidden), settings.dropout)
    xt, yt = torch.as_tensor(x_train, dtype=torch.float32), torch.as_tensor(y_train, dtype=torch.float32)
    xv, yv = torch.as_tensor(x_val, dtype=torch.float32), torch.as_tensor(y_val, dtype=torch.float32)
    loss_fn = nn.BCEWithLogitsLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, since = float("inf"), None, 0, 0
    history = []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for start in range(0, len(xt), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            val = float(loss_fn(model(xv), yv)) if len(xv) else total / len(xt)
        history.append({"epoch": epoch, "train_loss": total / len(xt), "val_loss": val})
        if val < best - 1e-5:
            best, best_epoch, since = val, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= settings.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, best_epoch, history)


def accuracy(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows where ``probs >= threshold`` equals the label (0.0 for no rows)."""
    labels = np.asarray(labels).astype(int)
    return float(((np.asarray(probs) >= threshold).astype(int) == labels).mean()) if len(labels) else 0.0
