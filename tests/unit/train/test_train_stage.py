"""Stage bookkeeping without Ray: which re-runs resume and which start fresh."""

from __future__ import annotations

from cogumi.config import load_config
from cogumi.train.stage import resume_key

INPUTS = {"data": "d1", "student": "m"}


def test_same_training_resumes_changed_training_starts_fresh():
    base = load_config(None, ["train.max_steps=10"])
    key = resume_key(base, INPUTS)
    assert key.startswith("run-") and key == resume_key(load_config(None, ["train.max_steps=10"]), INPUTS)
    # settings that do not change what is trained keep the key, so the re-run resumes
    for neutral in ("train.fail_once_at_step=3", "train.max_failures=0", "train.merge=true",
                    "train.eval_prompts=[hello]", "train.tune.num_samples=2"):
        assert resume_key(load_config(None, ["train.max_steps=10", neutral]), INPUTS) == key, neutral
    # anything that changes the trained weights gets its own Ray run (old checkpoints stay untouched)
    for changed in ("train.learning_rate=0.001", "train.lora.r=8", "student.model=/x", "run.seed=1"):
        assert resume_key(load_config(None, ["train.max_steps=10", changed]), INPUTS) != key, changed
    assert resume_key(base, {**INPUTS, "data": "d2"}) != key
