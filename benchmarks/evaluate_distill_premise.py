"""The spec's "distill determinism" premise, measured on the embedded model.

1. Greedy accuracy of the base model on the held-out slice of the bundled simple-math set.
2. ``cogumi distill`` (Phase 1C) over the train slice: the model's own answers, kept
   when consistent (greedy + verified by default, or voted with ``--strategy vote``).
3. A small LoRA adapter trained on the kept answers through the training phase
   (``cogumi.train.stage.run_train``, ``train.data=stage:distill/distilled.jsonl``).
4. Greedy accuracy of base + adapter on the same held-out slice.

Both accuracies come from the same lm-eval task (``cogumi_simple_math``: chat template,
greedy, the final number matched) on the same HF weights, without and with the adapter. Sample sizes are printed with the result; with
60 held-out problems one problem is 1.7 points, so small deltas are noise.

    python benchmarks/evaluate_distill_premise.py --out /tmp/premise [--heldout 60] [--strategy verified]
        [--set train.use_gpu=true]   # train on the GPU (evaluation already picks CUDA when present)
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
from cogumi.evaluate.config import HarnessConfig  # noqa: E402
from cogumi.evaluate.harness import run_harness  # noqa: E402



def accuracy(model_cfg, n: int, max_tokens: int) -> dict:
    """Greedy accuracy on the held-out slice through lm-eval (task ``cogumi_simple_math``, final number)."""
    t0 = time.time()
    res = run_harness(model_cfg, HarnessConfig(tasks=["cogumi_simple_math"], limit=n, batch_size=16,
                                               apply_chat_template=True,
                                               max_gen_toks=max_tokens))
    task = res["tasks"]["cogumi_simple_math"]
    p, count = task["metrics"]["exact_match,flexible-extract"], task["n"]
    return {"n": count, "correct": round(p * count), "accuracy": p, "stderr": math.sqrt(p * (1 - p) / count),
            "seconds": round(time.time() - t0, 1), "method": res["method"],
            "answers": [{"id": s["doc_id"], "expected": s["target"], "got": s["response"],
                         "correct": s["metrics"].get("exact_match")} for s in res["samples"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/cogumi-premise")
    ap.add_argument("--heldout", type=int, default=60, help="held-out problems scored before and after")
    ap.add_argument("--train-limit", type=int, default=100, help="train-slice prompts distilled")
    ap.add_argument("--strategy", choices=["verified", "vote"], default="verified")
    ap.add_argument("--n-samples", type=int, default=5, help="samples per prompt with --strategy vote")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--steps", type=int, default=40, help="training steps")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override, applied last (e.g. --set train.use_gpu=true on a CUDA machine)")
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
                 "train.early_stopping.patience=null", "train.early_stopping.overfit_gap=null", *args.extra]
    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "local.yaml", overrides)
    hf_student = cfg.student.model_copy(update={"backend": "transformers"})
    report: dict = {"setup": dict(vars(args))}

    print(f"[1/4] base greedy accuracy on {args.heldout} held-out problems (lm-eval) ...", flush=True)
    report["before"] = accuracy(hf_student, args.heldout, args.max_tokens)
    print(f"      {report['before']['correct']}/{report['before']['n']}", flush=True)

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
    report["after"] = accuracy(hf_student.model_copy(update={"adapter": adapter}), args.heldout, args.max_tokens)
    delta = 100 * (report["after"]["accuracy"] - report["before"]["accuracy"])
    report["delta_points"] = delta
    (out / "premise.json").write_text(json.dumps(report, indent=2, default=str))
    b, a = report["before"], report["after"]
    print(f"held-out greedy accuracy: before {b['correct']}/{b['n']} ({100 * b['accuracy']:.1f}%), "
          f"after {a['correct']}/{a['n']} ({100 * a['accuracy']:.1f}%), delta {delta:+.1f} points "
          f"(trained on {report['distill']['examples']} distilled examples; goal >= +5)", flush=True)


if __name__ == "__main__":
    main()
