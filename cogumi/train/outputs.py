"""Stage outputs from a finished training run: adapter, tables, curves, generations, TensorBoard.

Everything is read from checkpoint folders (the latest one carries the whole
history: ``trainer_state.json`` and ``probe.json``), so outputs can be rebuilt
from Ray's storage alone.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from cogumi.train.sft import PROBE_FILE, TB_DIR

#: outputs of a training stage other stages read (``stage:<train stage>/<name>``)
ADAPTER = "adapter"  # the PEFT adapter of the best checkpoint
MERGED = "merged"  # base + adapter as one HF model (train.merge)

#: checkpoint files that are training state, not part of the adapter
STATE_FILES = {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", PROBE_FILE, "README.md",
               "rng_state.pth"}
CSV_COLUMNS = ["step", "epoch", "eval_loss", "perplexity", "train_loss", "learning_rate", "kept", "best"]


def adapter_files(ckpt_dir: str | Path) -> list[Path]:
    """The files of a checkpoint that make up the PEFT adapter (+ tokenizer), without training state."""
    out = []
    for p in sorted(Path(ckpt_dir).iterdir()):
        if p.is_file() and p.name not in STATE_FILES and not p.name.startswith("rng_state"):
            out.append(p)
    return out


def read_probe(ckpt_dir: str | Path) -> dict[str, Any]:
    """``probe.json`` of a checkpoint (empty history when absent)."""
    p = Path(ckpt_dir) / PROBE_FILE
    return json.loads(p.read_text()) if p.is_file() else {"history": [], "events": []}


def read_log_history(ckpt_dir: str | Path) -> list[dict[str, Any]]:
    """The trainer's log history (every logged loss, learning rate, evaluation)."""
    p = Path(ckpt_dir) / "trainer_state.json"
    return json.loads(p.read_text()).get("log_history", []) if p.is_file() else []


def checkpoint_table(history: list[dict[str, Any]], kept_steps: set[int], best_step: int | None) -> str:
    """CSV: validation loss and perplexity per checkpoint, which ones Ray kept, which is best."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({**row, "kept": row["step"] in kept_steps, "best": row["step"] == best_step})
    return buf.getvalue()


def generations_jsonl(history: list[dict[str, Any]]) -> str:
    """One line per (checkpoint, fixed prompt) with the checkpoint's answer."""
    lines = []
    for row in history:
        for g in row.get("generations", []):
            lines.append(json.dumps({"step": row["step"], "eval_loss": row.get("eval_loss"), **g}))
    return "\n".join(lines) + ("\n" if lines else "")


def loss_curve_png(log_history: list[dict[str, Any]], title: str) -> bytes:
    """PNG of training loss per logged step and validation loss per evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    val = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1.2)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss", lw=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def tensorboard_dir(ckpt_dir: str | Path) -> Path | None:
    """The TensorBoard event folder saved with a checkpoint."""
    p = Path(ckpt_dir) / TB_DIR
    return p if p.is_dir() else None
