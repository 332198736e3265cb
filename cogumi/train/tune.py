"""`cogumi tune`: Ray Tune over training — LR, LoRA rank, alpha, dropout — with ASHA early stopping.

Train V2 pattern: the ``Tuner`` runs a small driver function per trial (it holds
``train.tune.driver_cpus`` CPUs); the driver builds a ``TorchTrainer`` for the
trial's sample and fits it; ``TuneReportCallback`` forwards each checkpoint's
validation loss to Tune, so ASHA can stop weak trials between checkpoints.
Optuna (TPE) drives the search when it is installed, random search otherwise.

Writes ``<run>/<train.tune.stage>/``: ``results.csv`` (one row per trial),
``trials.png`` (validation loss per checkpoint, per trial), ``best.json`` and the
manifest (best config and the path of its best checkpoint's adapter).
"""

from __future__ import annotations

import importlib.util
import io
import math
from typing import Any

from cogumi.artifacts import RunDir
from cogumi.config import CogumiConfig
from cogumi.errors import CogumiError
from cogumi.raycluster import connect
from cogumi.train.ray_train import SCORE, apply_overrides, build_trainer, check_cluster
from cogumi.train.sft import SFTJob
from cogumi.train.stage import prepare

SEARCHED = ("learning_rate", "lora.r", "lora.alpha", "lora.dropout")


def search_space(cfg: CogumiConfig) -> dict[str, Any]:
    """Tune's param space from ``train.tune`` (keys are dotted train settings)."""
    from ray import tune

    t = cfg.train.tune
    return {"learning_rate": tune.loguniform(*t.learning_rate), "lora.r": tune.choice(list(t.r)),
            "lora.alpha": tune.choice(list(t.alpha)), "lora.dropout": tune.uniform(*t.dropout)}


def search_algorithm(cfg: CogumiConfig) -> tuple[Any, str]:
    """(search algorithm or None for random sampling, its name for the manifest)."""
    want = cfg.train.tune.search
    have_optuna = importlib.util.find_spec("optuna") is not None
    if want == "optuna" and not have_optuna:
        raise CogumiError("train.tune.search is optuna but Optuna is not installed", "train.tune.search",
                          "pip install optuna, or set train.tune.search to auto or random")
    if want == "random" or not have_optuna:
        return None, "random" + (" (optuna not installed)" if want == "auto" else "")
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=SCORE, mode="min", seed=cfg.run.seed), "optuna (TPE)"


def reports_per_trial(cfg: CogumiConfig, n_train: int) -> int:
    """How many checkpoints (Tune iterations) a full trial reports: ASHA's ``max_t``."""
    tc = cfg.train
    steps = tc.max_steps or math.ceil(tc.epochs * math.ceil(n_train / (tc.batch_size * tc.num_workers))
                                      / tc.grad_accum)
    return max(1, math.ceil(steps / tc.save_steps))


def run_tune(cfg: CogumiConfig) -> dict[str, Any]:
    """Run the search and write its results into the run directory.

    Returns:
        trials, search name, best trial (config, eval_loss, checkpoint), results path.
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    tc, tu = cfg.train, cfg.train.tune
    run = RunDir.open(cfg.run.root, cfg.run.name)
    stage = run.stage(tu.stage)
    prep = prepare(cfg, run)
    if not prep["val_rows"]:
        raise CogumiError("tuning needs validation examples to compare trials", "train.val_fraction",
                          "set train.val_fraction > 0 or train.val_data")
    connect()
    check_cluster(tc)
    algo, algo_name = search_algorithm(cfg)
    max_t = reports_per_trial(cfg, len(prep["rows"]))
    with stage.begin(cfg.section_hash("train", "student"), prep["inputs"]) as rec:
        job_ref = ray.put(SFTJob(cfg=tc, model_location=prep["model_location"], train_rows=prep["rows"],
                                 val_rows=prep["val_rows"], seed=prep["seed"]))
        driver = _make_driver(cfg, job_ref, run.fs, stage.file("trials"))
        tuner = tune.Tuner(
            tune.with_resources(driver, {"CPU": tu.driver_cpus}),
            param_space=search_space(cfg),
            tune_config=tune.TuneConfig(
                num_samples=tu.num_samples, max_concurrent_trials=tu.max_concurrent, search_alg=algo,
                scheduler=ASHAScheduler(metric=SCORE, mode="min", time_attr="training_iteration", max_t=max_t,
                                        grace_period=min(tu.grace_period, max_t),
                                        reduction_factor=tu.reduction_factor)),
            run_config=tune.RunConfig(name="tuner", storage_path=stage.file("tuner"), storage_filesystem=run.fs,
                                      callbacks=[make_pg_release_callback(run.fs, stage.file("trials"))]),
        )
        grid = tuner.fit()
        rows = trial_rows(grid)
        finished = [r for r in rows if r.get(SCORE) is not None]
        if not finished:
            errors = [str(r.get("error")) for r in rows if r.get("error")]
            raise CogumiError(f"no trial reported a validation loss ({len(rows)} trials; first error: "
                              f"{errors[0][:300] if errors else 'none'})", f"stage {tu.stage}",
                              "check the trial logs under the stage's tuner/ folder")
        best = min(finished, key=lambda r: r[SCORE])
        best_out = {"trial_id": best["trial_id"], "eval_loss": best[SCORE], "perplexity": best.get("perplexity"),
                    "config": {k: best[k] for k in SEARCHED}, "checkpoint": best.get("checkpoint_path")}
        rec.write_text("results.csv", _csv(rows))
        rec.write_json("best.json", best_out)
        with rec.fs.open_output_stream(rec.path("trials.png")) as f:
            f.write(_plot(grid))
        rec.metrics.update({"trials": len(rows), "finished_trials": len(finished),
                            "stopped_early": sum(1 for r in rows if r["iterations"] < max_t),
                            "best_eval_loss": best[SCORE], "best_config": best_out["config"],
                            "best_adapter": best_out["checkpoint"] or ""})
        rec.method.update({"search": algo_name, "scheduler": f"ASHA (max_t={max_t} checkpoints, grace "
                           f"{min(tu.grace_period, max_t)}, reduction {tu.reduction_factor})",
                           "trial": "driver fn -> ray.train.torch.TorchTrainer + TuneReportCallback"})
    return {"trials": len(rows), "search": algo_name, "best": best_out, "results": stage.file("results.csv")}


def _make_driver(cfg: CogumiConfig, job_ref: Any, fs: Any, trials_path: str):
    tc = cfg.train

    def driver(config: dict[str, Any]) -> None:
        from ray import tune
        from ray.tune.integration.ray_train import TuneReportCallback

        from cogumi.train.ray_train import fit

        overrides = {k: config[k] for k in SEARCHED}
        trial_id = tune.get_context().get_trial_id()
        trainer = build_trainer(apply_overrides(tc, overrides), job_ref, storage_path=trials_path, storage_fs=fs,
                                name=trial_id, callbacks=[TuneReportCallback()], overrides=overrides,
                                pg_marker=(fs, pg_marker_path(trials_path, trial_id)))
        fit(trainer)

    return driver


def pg_marker_path(trials_path: str, trial_id: str) -> str:
    """Where a trial's rank-0 worker writes the id of its placement group."""
    return f"{trials_path}/{trial_id}.placement-group"


def make_pg_release_callback(fs: Any, trials_path: str) -> Any:
    """A Tune callback that removes a finished trial's worker placement group.

    Tune stops a trial's driver as soon as the trial is done (ASHA, or ``max_t``
    reached), which can kill the Train controller before it removes its workers'
    placement group. Ray's fallback cleaner needs the state API, which fails when
    several Ray instances run on one machine; a leaked group would hold the next
    trial's CPUs/GPUs forever. The worker wrote its group's id; remove it here.
    """
    import ray
    from ray import tune
    from ray.util import placement_group_table
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    class ReleaseTrialPlacementGroup(tune.Callback):
        def _release(self, trial: Any) -> None:
            path = pg_marker_path(trials_path, trial.trial_id)
            try:
                with fs.open_input_stream(path) as f:
                    pg_id = f.read().decode().strip()
            except (FileNotFoundError, OSError):
                return
            if placement_group_table().get(pg_id, {}).get("state", "REMOVED") != "REMOVED":
                remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(pg_id)))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._release(trial)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._release(trial)

    return ReleaseTrialPlacementGroup()


def trial_rows(grid: Any) -> list[dict[str, Any]]:
    """One dict per trial: its sample, last validation loss, iterations, checkpoint, error."""
    rows = []
    for result in grid:
        m = result.metrics or {}
        conf = result.config or {}
        rows.append({"trial_id": m.get("trial_id") or (result.path or "").rsplit("/", 1)[-1],
                     **{k: conf.get(k) for k in SEARCHED},
                     SCORE: m.get(SCORE), "perplexity": m.get("perplexity"), "step": m.get("step"),
                     "iterations": int(m.get("training_iteration") or 0),
                     "checkpoint_path": m.get("checkpoint_path"),
                     "error": str(result.error).splitlines()[0][:300] if result.error else None})
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    import csv

    buf = io.StringIO()
    cols = ["trial_id", *SEARCHED, SCORE, "perplexity", "step", "iterations", "checkpoint_path", "error"]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _plot(grid: Any) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for result in grid:
        df = result.metrics_dataframe
        if df is None or SCORE not in df or df.empty:
            continue
        conf = result.config or {}
        label = f"lr={conf.get('learning_rate', 0):.1e} r={conf.get('lora.r')} a={conf.get('lora.alpha')}"
        ax.plot(df["training_iteration"], df[SCORE], "o-", label=label)
    ax.set_xlabel("checkpoint (Tune iteration)")
    ax.set_ylabel("validation loss")
    ax.set_title("Tune trials (ASHA)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
