"""Trainer callbacks for the spec's monitoring rules, plus fault injection for tests.

- :class:`LossGuard`: NaN/inf loss stops at once; after ``after_steps`` a loss above
  ``reduce_above`` lowers the LR once, above ``stop_above`` stops the run.
- :class:`EarlyStopping`: no new best validation loss for ``patience`` evaluations,
  or validation loss above training loss + ``overfit_gap``, stops the run.
- :class:`FailOnce`: raises once at a step (a marker file makes it once per run).

A callback that stops the run records why in ``stop_reason``; the worker returns it
and the stage turns harmful stops into a :class:`~cogumi.errors.CogumiError`.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

from cogumi.train.config import EarlyStoppingConfig, ExplosionConfig


class StopReason:
    """Shared, mutable record of why training ended early (None = it ran to the end)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.detail: str = ""
        self.events: list[dict[str, Any]] = []

    def stop(self, control: Any, reason: str, detail: str) -> None:
        """Ask the trainer to stop (no further evaluation or checkpoint) and remember why."""
        if self.reason is None:
            self.reason, self.detail = reason, detail
        control.should_training_stop = True
        control.should_save = False
        control.should_evaluate = False

    @property
    def harmful(self) -> bool:
        """A stop the user must act on (the loss diverged)."""
        return self.reason in ("nan_loss", "loss_explosion")


class LossGuard(TrainerCallback):
    """The spec's loss-explosion rules applied to every logged training loss."""

    def __init__(self, rules: ExplosionConfig, stop: StopReason):
        self.rules, self.stop = rules, stop
        self.reduced = False

    def on_log(self, args, state, control, logs=None, optimizer=None, lr_scheduler=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None:
            return control
        step = state.global_step
        if not math.isfinite(loss):
            self.stop.stop(control, "nan_loss", f"training loss became {loss} at step {step}")
            return control
        if step < self.rules.after_steps:
            return control
        if loss > self.rules.stop_above:
            self.stop.stop(control, "loss_explosion",
                           f"training loss {loss:.3f} > {self.rules.stop_above} at step {step}")
        elif loss > self.rules.reduce_above and not self.reduced:
            self.reduced = True
            factor = self.rules.reduce_factor
            scale_lr(optimizer, lr_scheduler, factor)
            self.stop.events.append({"step": step, "event": "lr_reduced", "factor": factor, "loss": loss})
        return control


def scale_lr(optimizer: Any, scheduler: Any, factor: float) -> None:
    """Multiply the learning rate by ``factor`` now and for the rest of the schedule."""
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
    if optimizer is not None:
        for group in optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor


class GradientMonitor(TrainerCallback):
    """The spec's gradient monitoring: how often the logged gradient norm was clipped.

    Clipping in more than 5% of logged steps means the LR is too aggressive (spec);
    the fraction goes into the manifest and a ``clipping_high`` event is recorded.
    """

    def __init__(self, max_grad_norm: float, stop: StopReason, warn_above: float = 0.05):
        self.max_grad_norm, self.stop, self.warn_above = max_grad_norm, stop, warn_above
        self.logged = self.clipped = 0

    @property
    def fraction(self) -> float | None:
        """Share of logged steps whose gradient norm exceeded ``max_grad_norm``."""
        return self.clipped / self.logged if self.logged else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        norm = (logs or {}).get("grad_norm")
        if norm is not None and math.isfinite(norm):
            self.logged += 1
            self.clipped += norm > self.max_grad_norm
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.fraction is not None and self.fraction > self.warn_above:
            self.stop.events.append({"step": state.global_step, "event": "clipping_high",
                                     "fraction": round(self.fraction, 4),
                                     "hint": "gradients clipped in more than 5% of steps: lower the LR (spec)"})
        return control


class EarlyStopping(TrainerCallback):
    """Stop on a validation plateau (patience in evaluations) or on an overfitting gap."""

    def __init__(self, rules: EarlyStoppingConfig, stop: StopReason):
        self.rules, self.stop = rules, stop
        self.best: float | None = None
        self.bad_evals = 0
        self.train_loss: float | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and math.isfinite(logs["loss"]):
            self.train_loss = logs["loss"]
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        val = (metrics or {}).get("eval_loss")
        if val is None:
            return control
        step = state.global_step
        if not math.isfinite(val):
            self.stop.stop(control, "nan_loss", f"validation loss became {val} at step {step}")
            return control
        if self.best is None or val < self.best - self.rules.min_delta:
            self.best, self.bad_evals = val, 0
        else:
            self.bad_evals += 1
        gap = self.rules.overfit_gap
        if gap is not None and self.train_loss is not None and val > self.train_loss + gap:
            self.stop.stop(control, "overfitting",
                           f"validation loss {val:.3f} > training loss {self.train_loss:.3f} + {gap} at step {step}")
            control.should_save = True  # keep this evaluation's checkpoint: it is a finished, valid one
        elif self.rules.patience is not None and self.bad_evals >= self.rules.patience:
            self.stop.stop(control, "early_stopping",
                           f"no better validation loss for {self.bad_evals} evaluations (best {self.best:.4f})")
            control.should_save = True
        return control

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue counting."""
        return {"best": self.best, "bad_evals": self.bad_evals, "train_loss": self.train_loss}

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore counters saved with a checkpoint."""
        self.best, self.bad_evals = data.get("best"), int(data.get("bad_evals", 0))
        self.train_loss = data.get("train_loss")


class InjectedFault(RuntimeError):
    """Raised by :class:`FailOnce` (a test of worker restarts)."""


class FailOnce(TrainerCallback):
    """Raise once at ``step``; the marker (any pyarrow filesystem) keeps it from firing again."""

    def __init__(self, step: int, marker_fs: Any, marker_path: str):
        self.step, self.fs, self.path = step, marker_fs, marker_path

    def on_step_end(self, args, state, control, **kwargs):
        import pyarrow.fs as pafs

        if state.global_step != self.step:
            return control
        if self.fs.get_file_info(self.path).type != pafs.FileType.NotFound:
            return control
        with self.fs.open_output_stream(self.path) as f:
            f.write(f"fault injected at step {self.step}\n".encode())
        raise InjectedFault(f"injected fault at step {self.step} (train.fail_once_at_step)")
