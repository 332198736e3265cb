"""The training section: spec defaults, consistency rules, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cogumi.config import CogumiConfig, load_config
from cogumi.errors import CogumiError, ConfigError
from cogumi.train.config import TrainConfig
from cogumi.train.deepspeed import check_deepspeed_available, deepspeed_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_defaults_follow_the_spec():
    t = CogumiConfig().train
    assert (t.lora.r, t.lora.alpha, t.lora.dropout, len(t.lora.target_modules)) == (64, 16, 0.05, 7)
    assert t.qlora and t.packing and t.gradient_checkpointing and t.lr_scheduler == "cosine"
    assert (t.weight_decay, t.max_grad_norm) == (0.01, 1.0)
    assert (t.eval_steps, t.save_steps, t.keep_best) == (500, 1000, 5)
    # loss explosion: > 3.0 after 1K steps -> LR x0.6 (5e-6 -> 3e-6); > 5.0 -> stop, restart at x0.4 (2e-6)
    e = t.explosion
    assert (e.after_steps, e.reduce_above, e.stop_above) == (1000, 3.0, 5.0)
    assert 5e-6 * e.reduce_factor == pytest.approx(3e-6) and 5e-6 * e.restart_factor == pytest.approx(2e-6)
    assert t.early_stopping.overfit_gap == 0.5 and t.early_stopping.patience * t.eval_steps == 3000


def test_zero3_with_4bit_is_refused_at_load_time():
    with pytest.raises(ConfigError, match="ZeRO-3 cannot shard a 4-bit"):
        load_config(None, ["train.deepspeed=zero3", "train.use_gpu=true"])
    cfg = load_config(None, ["train.deepspeed=zero3", "train.use_gpu=true", "train.qlora=false"])
    assert deepspeed_config(cfg.train)["zero_optimization"]["stage"] == 3


def test_zero2_config_leaves_sizes_to_the_training_arguments():
    ds = deepspeed_config(TrainConfig(deepspeed="zero2", use_gpu=True))
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["gradient_clipping"] == "auto"
    assert deepspeed_config(TrainConfig()) is None


def test_deepspeed_needs_the_package_and_gpus():
    with pytest.raises(ConfigError, match="needs use_gpu"):
        load_config(None, ["train.deepspeed=zero2"])
    cfg = TrainConfig(deepspeed="zero2", use_gpu=True)
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        with pytest.raises(CogumiError, match=r"cogumi\[gpu\]"):
            check_deepspeed_available(cfg)
    check_deepspeed_available(TrainConfig())  # no-op without deepspeed


def test_checkpoints_must_fall_on_evaluations():
    with pytest.raises(ConfigError, match="multiple of eval_steps"):
        load_config(None, ["train.eval_steps=3", "train.save_steps=4"])


def test_tune_ranges_are_checked():
    with pytest.raises(ConfigError, match="learning_rate range"):
        load_config(None, ["train.tune.learning_rate=[0.01, 0.001]"])


def test_phase1b_config_continues_the_1a_adapter_at_the_spec_lr():
    cfg = load_config(CONFIGS / "phase1b.yaml")
    t = cfg.train
    assert t.stage == "train-1b" and t.learning_rate == 5e-6 and t.qlora
    assert t.init_adapter == "stage:train/adapter" and t.data == "stage:evaluate/failures.jsonl"
    assert cfg.run.name == load_config(CONFIGS / "local.yaml").run.name  # same run as Phase 1A


def test_tune_and_local_configs_are_small_cpu_runs():
    for name in ("local.yaml", "tune.yaml"):
        t = load_config(CONFIGS / name).train
        assert not t.use_gpu and t.max_steps and t.max_steps <= 8
    assert load_config(CONFIGS / "tune.yaml").train.tune.num_samples >= 2
