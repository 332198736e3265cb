"""The spec's monitoring rules as trainer callbacks."""

from __future__ import annotations

import math

import pyarrow.fs as pafs
import pytest
import torch
from transformers import TrainerControl, TrainerState

from cogumi.train.callbacks import EarlyStopping, FailOnce, GradientMonitor, InjectedFault, LossGuard, StopReason
from cogumi.train.config import EarlyStoppingConfig, ExplosionConfig


def _opt_sched(lr=5e-6):
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return opt, sched


def _state(step):
    s = TrainerState()
    s.global_step = step
    return s


def test_loss_above_3_after_1k_steps_lowers_lr_once_like_the_spec():
    stop, opt, sched = StopReason(), *_opt_sched(5e-6)
    guard = LossGuard(ExplosionConfig(), stop)
    c = TrainerControl()
    guard.on_log(None, _state(999), c, logs={"loss": 4.0}, optimizer=opt, lr_scheduler=sched)
    assert opt.param_groups[0]["lr"] == 5e-6  # not before step 1000
    guard.on_log(None, _state(1000), c, logs={"loss": 3.5}, optimizer=opt, lr_scheduler=sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-6)
    sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(3e-6)  # the schedule keeps the lower LR
    guard.on_log(None, _state(1010), c, logs={"loss": 3.5}, optimizer=opt, lr_scheduler=sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-6)  # once only
    assert stop.events == [{"step": 1000, "event": "lr_reduced", "factor": 0.6, "loss": 3.5}]
    assert not c.should_training_stop and stop.reason is None


def test_loss_above_5_stops_without_saving():
    stop = StopReason()
    c = TrainerControl(should_save=True)
    LossGuard(ExplosionConfig(), stop).on_log(None, _state(1200), c, logs={"loss": 5.5})
    assert c.should_training_stop and not c.should_save and stop.reason == "loss_explosion" and stop.harmful


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_loss_stops_at_any_step(bad):
    stop = StopReason()
    c = TrainerControl()
    LossGuard(ExplosionConfig(), stop).on_log(None, _state(3), c, logs={"loss": bad})
    assert c.should_training_stop and stop.reason == "nan_loss"


def test_patience_counts_evaluations_without_a_new_best():
    stop = StopReason()
    es = EarlyStopping(EarlyStoppingConfig(patience=2, overfit_gap=None), stop)
    c = TrainerControl()
    for step, loss in [(1, 2.0), (2, 1.5), (3, 1.6), (4, 1.55)]:
        es.on_evaluate(None, _state(step), c, metrics={"eval_loss": loss})
    assert c.should_training_stop and stop.reason == "early_stopping" and not stop.harmful
    assert c.should_save  # keep the evaluated state as a finished checkpoint


def test_validation_far_above_training_is_overfitting():
    stop = StopReason()
    es = EarlyStopping(EarlyStoppingConfig(overfit_gap=0.5), stop)
    c = TrainerControl()
    es.on_log(None, _state(5), c, logs={"loss": 1.0})
    es.on_evaluate(None, _state(5), c, metrics={"eval_loss": 1.4})
    assert not c.should_training_stop
    es.on_evaluate(None, _state(6), c, metrics={"eval_loss": 1.6})
    assert c.should_training_stop and stop.reason == "overfitting"


def test_early_stopping_state_survives_a_resume():
    es = EarlyStopping(EarlyStoppingConfig(patience=3), StopReason())
    es.on_evaluate(None, _state(1), TrainerControl(), metrics={"eval_loss": 1.0})
    es.on_evaluate(None, _state(2), TrainerControl(), metrics={"eval_loss": 1.2})
    again = EarlyStopping(EarlyStoppingConfig(patience=3), StopReason())
    again.load_state_dict(es.state_dict())
    assert (again.best, again.bad_evals) == (1.0, 1)


def test_fail_once_fires_one_time(tmp_path):
    cb = FailOnce(2, pafs.LocalFileSystem(), str(tmp_path / "marker"))
    cb.on_step_end(None, _state(1), TrainerControl())
    with pytest.raises(InjectedFault):
        cb.on_step_end(None, _state(2), TrainerControl())
    cb.on_step_end(None, _state(2), TrainerControl())  # a restarted worker passes
    assert (tmp_path / "marker").is_file()


def test_clipping_in_more_than_5_percent_of_steps_is_flagged():
    stop = StopReason()
    mon = GradientMonitor(1.0, stop)
    for norm in [0.5] * 18 + [2.0, 3.0]:
        mon.on_log(None, _state(1), TrainerControl(), logs={"grad_norm": norm})
    mon.on_train_end(None, _state(20), TrainerControl())
    assert mon.fraction == 0.1 and stop.events[0]["event"] == "clipping_high"
