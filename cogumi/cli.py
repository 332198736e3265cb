"""The ``cogumi`` command line: ``config``, ``models``, ``doctor``, ``generate``.

Each command accepts ``--config FILE`` and repeated ``--set dotted.key=value``.
User errors (:class:`CogumiError`) print one paragraph and exit with status 2.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from cogumi.config import CogumiConfig, dump_config, load_config
from cogumi.errors import CogumiError

app = typer.Typer(help="Cogumi: distil, compress, route and serve a small LLM system on Ray.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (default: built-in defaults)")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override, e.g. train.lora.r=32")]


def user_errors(fn):
    """Turn CogumiError (and bad arguments) into a one-paragraph message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CogumiError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except ValueError as exc:
            err_console.print(f"[bold red]error:[/] invalid request: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _load(config: Path | None, overrides: list[str] | None) -> CogumiConfig:
    return load_config(config, overrides or [])


@app.command("config")
@user_errors
def config_cmd(config: ConfigOpt = None, set_: SetOpt = None,
               section: Annotated[Optional[str], typer.Argument(help="print only this section")] = None) -> None:
    """Print the resolved configuration (defaults + file + overrides) as YAML."""
    cfg = _load(config, set_)
    if section:
        if section not in CogumiConfig.model_fields:
            raise CogumiError(f"no section '{section}'", "cogumi config",
                              f"choose one of {', '.join(CogumiConfig.model_fields)}")
        import yaml

        data = {section: cfg.model_dump(mode="json")[section]}
        typer.echo(yaml.safe_dump(data, sort_keys=False, width=10_000), nl=False)
        return
    typer.echo(dump_config(cfg), nl=False)
    typer.echo(f"# config hash {cfg.section_hash()[:16]}")


@app.command("models")
@user_errors
def models_cmd(role: Annotated[Optional[str], typer.Option(help="student, teacher, judge or reference")] = None,
               config: ConfigOpt = None, set_: SetOpt = None,
               json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """List catalogued models with memory estimates (for the config's train settings) and whether they fit here."""
    from cogumi.doctor import memory_note
    from cogumi.models.registry import list_models
    from cogumi.models.resources import detect_local, estimate_for, plan

    cfg = _load(config, set_)
    node = detect_local()
    context, settings = cfg.student.n_ctx, ""
    rows = []
    for spec in list_models(role):
        row: dict[str, Any] = {"name": spec.name, "hf_id": spec.hf_id, "params_b": spec.params_b,
                               "context": spec.context, "arch": spec.architecture, "licence": spec.licence,
                               "roles": list(spec.roles)}
        if spec.is_local:
            fit = plan(spec, node, context=context, r=cfg.train.lora.r, seq_len=cfg.train.max_seq_length)
            est = estimate_for(spec, node, cfg.train, context=context)
            settings = est.settings
            row |= {"fp16_gb": est.fp16_gb, "nf4_gb": est.nf4_gb, "qlora_gb": est.qlora_gb, "device": fit.device,
                    "fits_inference": fit.inference_weights or "no", "qlora_batch": fit.train_batch_size or "no"}
        else:
            row |= {"price_in": spec.price_in_per_mtok, "price_out": spec.price_out_per_mtok, "fits_inference": "api"}
        rows.append(row)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Model registry — fit on {node.node} ({node.best_device}, {node.device_free_gb:.1f} GB free)")
    for col in ("name", "params", "ctx", "arch", "fp16 GB", "NF4 GB", "QLoRA GB", "fits here",
                "largest QLoRA batch", "licence"):
        table.add_column(col)
    for r in rows:
        local = "fp16_gb" in r
        table.add_row(r["name"], f"{r['params_b']:g}B" if r["params_b"] else "-", str(r["context"]), r["arch"],
                      str(r.get("fp16_gb", "-")), str(r.get("nf4_gb", "-")), str(r.get("qlora_gb", "-")),
                      str(r["fits_inference"]) if local else f"api (${r['price_in']}/${r['price_out']} per Mtok)",
                      str(r.get("qlora_batch", "-")), r["licence"])
    console.print(table)
    if settings:
        console.print(memory_note(settings), highlight=False)


@app.command("doctor")
@user_errors
def doctor_cmd(config: ConfigOpt = None, set_: SetOpt = None,
               ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="also list the nodes of this Ray cluster")] = None,
               json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check this machine: hardware, packages, the embedded model, and what fits."""
    from cogumi.doctor import run_checks

    cfg = _load(config, set_)
    report = run_checks(cfg, ray_address)
    if json_out:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        from cogumi.doctor import render

        render(report, console)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command("generate")
@user_errors
def generate_cmd(prompt: Annotated[str, typer.Argument(help="the user message")],
                 config: ConfigOpt = None, set_: SetOpt = None,
                 backend: Annotated[Optional[str], typer.Option(help="llamacpp, transformers or openai")] = None,
                 model: Annotated[Optional[str], typer.Option(help="model path / id / served name")] = None,
                 base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible base URL")] = None,
                 role: Annotated[str, typer.Option(help="which model of the config: student or judge")] = "student",
                 system: Annotated[Optional[str], typer.Option(help="system message")] = None,
                 max_tokens: Annotated[Optional[int], typer.Option()] = None,
                 temperature: Annotated[Optional[float], typer.Option()] = None,
                 raw: Annotated[bool, typer.Option("--raw", help="plain completion, no chat template")] = False,
                 on_ray: Annotated[bool, typer.Option("--ray", help="run inside a Ray task (local or RAY_ADDRESS)")] = False,
                 json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Answer one prompt through any backend; print text, tokens/s and usage."""
    from cogumi.generate import GenerateRequest, run_generate, run_generate_on_ray

    cfg = _load(config, set_)
    if role not in ("student", "judge"):
        raise CogumiError(f"unknown role '{role}'", "--role", "use student or judge")
    mcfg = getattr(cfg, role)
    updates = {k: v for k, v in {"backend": backend, "model": model, "base_url": base_url}.items() if v is not None}
    if updates:
        mcfg = type(mcfg).model_validate(mcfg.model_dump() | updates)
    sampling = cfg.sampling.model_copy(update={k: v for k, v in
                                               {"max_tokens": max_tokens, "temperature": temperature}.items()
                                               if v is not None})
    req = GenerateRequest(model=mcfg, sampling=sampling, prompt=prompt, system=system, raw=raw)
    result = run_generate_on_ray(req) if on_ray else run_generate(req)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(result["text"])
    u = result["usage"]
    err_console.print(f"[dim]{result['backend']} · {result['model']} · {u['completion_tokens']} tokens in "
                      f"{result['latency_s']:.2f}s ({result['tokens_per_s']:.1f} tok/s) · prompt {u['prompt_tokens']} "
                      f"· total {u['total_tokens']} · finish {result['finish_reason']}[/]", highlight=False)


@app.command("submit")
@user_errors
def submit_cmd(phase: Annotated[str, typer.Argument(help="job to run: a file name in jobs/ without .py")],
               address: Annotated[str, typer.Option(help="Ray dashboard address, e.g. http://head:8265",
                                                    envvar="RAY_ADDRESS")],
               config: Annotated[Optional[str], typer.Option("--config", "-c", help="config path inside the repo")] = None,
               set_: SetOpt = None,
               gpus: Annotated[float, typer.Option(help="GPUs reserved for the job's driver")] = 0,
               wait: Annotated[bool, typer.Option("--wait/--no-wait", help="tail logs until the job ends")] = True,
               args: Annotated[Optional[list[str]], typer.Argument(help="extra arguments for the job")] = None) -> None:
    """Submit `jobs/<phase>.py` to a Ray cluster and tail its logs (exit 1 if the job fails)."""
    from cogumi.submit import job_entrypoint, submit

    repo = Path.cwd()
    if config and not (repo / config).is_file():
        raise CogumiError(f"config {config} is not inside the working directory that is shipped", str(repo / config),
                          "run `cogumi submit` from the repository root with a config path relative to it")
    entry = job_entrypoint(phase, config, set_ or [], args or [], repo)
    job_id, status = submit(address, entry, repo, num_gpus=gpus, wait=wait,
                            echo=lambda line: console.print(line, highlight=False, markup=False))
    err_console.print(f"job {job_id}: {status}")
    if wait and status != "SUCCEEDED":
        raise typer.Exit(1)


# ---------------------------------------------------------------- phase commands
# Each phase registers its command(s) here, one import + one registration per line:
#   from cogumi.<phase>.commands import <name>_cmd  # noqa: E402
#   app.command("<name>")(<name>_cmd)
from cogumi.curate.commands import curate_cmd, dedup_cmd  # noqa: E402
app.command("curate")(curate_cmd)
app.command("dedup")(dedup_cmd)
from cogumi.serve.commands import serve_cmd  # noqa: E402
app.command("serve")(serve_cmd)
from cogumi.train.commands import train_cmd, tune_cmd  # noqa: E402
app.command("train")(train_cmd)
app.command("tune")(tune_cmd)
from cogumi.compress.commands import compress_cmd  # noqa: E402
app.command("compress")(compress_cmd)
from cogumi.route.commands import router_cmd  # noqa: E402
app.command("router")(router_cmd)
from cogumi.evaluate.commands import benchmark_cmd, compare_cmd, distill_cmd  # noqa: E402
app.command("benchmark")(benchmark_cmd)
app.command("compare")(compare_cmd)
app.command("distill")(distill_cmd)
from cogumi.modifiers.commands import modifiers_cmd  # noqa: E402
app.command("modifiers")(modifiers_cmd)
from cogumi.pipeline.commands import pipeline_cmd  # noqa: E402
app.command("pipeline")(pipeline_cmd)
# (end of phase commands)


def main() -> None:
    """Console-script entry point."""
    _quiet_libraries()
    app()


def _quiet_libraries() -> None:
    """Keep library progress bars and advisory warnings out of command output."""
    import logging
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("transformers", "accelerate", "bitsandbytes"):
        logging.getLogger(name).setLevel(logging.ERROR)

