"""Phase 1A/1B: QLoRA SFT of the student on Ray Train, and hyperparameter search on Ray Tune.

Modules, from the inside out:

- ``config``: the ``train`` section (LoRA, schedule, monitoring rules, Ray scaling, ``tune``).
- ``data``: read/check/split the curated Parquet or failure JSONL; chat-template checks.
- ``model``: NF4 or bf16 base, LoRA, what really runs (optimizer, attention, packing); merging.
- ``callbacks``: the spec's loss-explosion and early-stopping rules; fault injection for tests.
- ``sft``: the core every worker runs (TRL ``SFTTrainer``), reporting checkpoints through a Reporter.
- ``ray_train``: the thin ``TorchTrainer`` adapter (Train V2), resume and restarts.
- ``outputs`` / ``stage``: adapter, tables, curves, generations and the manifest in the run directory.
- ``tune``: ``Tuner`` over a driver function per trial, ASHA, Optuna when installed.
- ``commands``: ``cogumi train`` and ``cogumi tune``.
"""
