"""The spec's "distill determinism" premise, measured on the embedded model.

1. Greedy accuracy of the base model on the held-out slice of the bundled simple-math set.
2. ``cogumi distill`` (Phase 1C) over the train slice: the model's own answers, kept
   when consistent (greedy + verified by default, or voted with ``--strategy vote``).
3. A small LoRA adapter trained on the kept answers through the training phase
   (``cogumi.train.stage.run_train``, ``train.data=stage:distill/distilled.jsonl``).
4. Greedy accuracy of base + adapter on the same held-out slice.

Both accuracies use the same backend (transformers, greedy) and the same answer
extraction (the final number). Sample sizes are printed with the result; with
60 held-out problems one problem is 1.7 points, so small deltas are noise.

    python benchmarks/evaluate_distill_premise.py --out /tmp/premise [--heldout 60] [--strategy verified]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cogumi.config import load_config  # noqa: E402
from cogumi.evaluate.answers import final_number, numbers_equal, format_number  # noqa: E402
from cogumi.evaluate.prompts import load_prompts, select  # noqa: E402
from cogumi.models.inference import SamplingParams, make_backend  # noqa: E402

SYSTEM = "You are a helpful, accurate assistant. Answer completely and clearly."


def accuracy(model_cfg, rows, max_tokens: int) -> dict:
    """Greedy accuracy (final number equals the answer) of ``model_cfg`` on ``rows``."""
    backend = make_backend(model_cfg)
    correct, answers, t0 = 0, [], time.time()
    try:
        for r in rows:
            gen = backend.chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["prompt"]}],
                               SamplingParams(max_tokens=max_tokens, temperature=0.0))
            got = format_number(final_number(gen.text))
            ok = numbers_equal(got, r["answer"])
            correct += ok
            answers.append({"id": r["id"], "expected": r["answer"], "got": got, "correct": ok})
    finally:
        backend.close()
    n = len(rows)
    p = correct / n
    return {"n": n, "correct": correct, "accuracy": p, "stderr": math.sqrt(p * (1 - p) / n),
            "seconds": round(time.time() - t0, 1), "answers": answers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/cogumi-premise")
    ap.add_argument("--heldout", type=int, default=60, help="held-out problems scored before and after")
    ap.add_argument("--train-limit", type=int, default=100, help="train-slice prompts distilled")
    ap.add_argument("--strategy", choices=["verified", "vote"], default="verified")
    ap.add_argument("--n-samples", type=int, default=5, help="samples per prompt with --strategy vote")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--steps", type=int, default=40, help="training steps")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"run.root={out / 'runs'}", "run.name=premise", "evaluate.distill.prompts=bundled-math",
                 "evaluate.distill.split=train", f"evaluate.distill.limit={args.train_limit}",
                 f"evaluate.distill.max_tokens={args.max_tokens}", f"evaluate.distill.n_samples={args.n_samples}",
                 f"evaluate.distill.categories.math.keep={args.strategy}",
                 f"evaluate.distill.categories.math.generate_sample={args.strategy == 'vote'}",
                 f"evaluate.distill.categories.math.generate_temp={0.7 if args.strategy == 'vote' else 0.0}",
                 "evaluate.ray.enabled=false",
                 "train.stage=train-1c", "train.data=stage:distill/distilled.jsonl", "train.qlora=false",
                 f"train.max_steps={args.steps}", "train.batch_size=4", "train.grad_accum=1",
                 "train.learning_rate=0.0002", "train.lora.r=16", "train.lora.alpha=32", "train.eval_steps=10",
                 "train.save_steps=10", "train.max_seq_length=384", "train.val_fraction=0.1",
                 "train.early_stopping.patience=null", "train.early_stopping.overfit_gap=null"]
    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "local.yaml", overrides)
    heldout = select(load_prompts("bundled-math"), ["math"], args.heldout, split="heldout")
    hf_student = cfg.student.model_copy(update={"backend": "transformers"})
    report: dict = {"setup": {k: v for k, v in vars(args).items()}, "heldout_n": len(heldout)}

    print(f"[1/4] base greedy accuracy on {len(heldout)} held-out problems ...", flush=True)
    report["before"] = accuracy(hf_student, heldout, args.max_tokens)
    print(f"      {report['before']['correct']}/{len(heldout)}", flush=True)

    print(f"[2/4] distill ({args.strategy}) over {args.train_limit} train problems ...", flush=True)
    from cogumi.evaluate.distill_stage import distill_stage

    d = distill_stage(cfg, force=True)
    report["distill"] = {"examples": d["summary"]["examples"], "stats": d["summary"]["stats"]}
    print(f"      {d['summary']['examples']} training examples", flush=True)
    if not d["summary"]["examples"]:
        print("no consistent answers to train on; stopping", flush=True)
        (out / "premise.json").write_text(json.dumps(report, indent=2))
        return

    print(f"[3/4] train a LoRA adapter ({args.steps} steps) through the training phase ...", flush=True)
    import ray

    from cogumi.train.stage import run_train

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    t = run_train(cfg, force=True)
    adapter = t.get("adapter") or f"{t['stage']}/adapter"
    report["train"] = {"adapter": adapter, "metrics": t.get("metrics"), "method": t.get("method")}

    print("[4/4] adapter greedy accuracy on the same held-out problems ...", flush=True)
    report["after"] = accuracy(hf_student.model_copy(update={"adapter": adapter}), heldout, args.max_tokens)
    delta = 100 * (report["after"]["accuracy"] - report["before"]["accuracy"])
    report["delta_points"] = delta
    (out / "premise.json").write_text(json.dumps(report, indent=2, default=str))
    b, a = report["before"], report["after"]
    print(f"held-out greedy accuracy: before {b['correct']}/{b['n']} ({100 * b['accuracy']:.1f}%), "
          f"after {a['correct']}/{a['n']} ({100 * a['accuracy']:.1f}%), delta {delta:+.1f} points "
          f"(trained on {report['distill']['examples']} distilled examples; goal >= +5)", flush=True)


if __name__ == "__main__":
    main()
