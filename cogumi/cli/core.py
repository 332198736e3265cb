"""The core commands: ``config``, ``models``, ``doctor``, ``generate``, ``submit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cogumi.cli.options import ConfigOpt, JsonOpt, SetOpt, console, err_console, load, user_errors
from cogumi.config import CogumiConfig, dump_config
from cogumi.errors import CogumiError


@user_errors
def config_cmd(config: ConfigOpt = None, set_: SetOpt = None,
               section: Annotated[Optional[str], typer.Argument(help="print only this section")] = None) -> None:
    """Print the resolved configuration (defaults + file + overrides) as YAML."""
    cfg = load(config, set_)
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


@user_errors
def models_cmd(role: Annotated[Optional[str], typer.Option(help="student, teacher, judge or reference")] = None,
               config: ConfigOpt = None, set_: SetOpt = None,
               json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """List catalogued models with memory estimates (for the config's train settings) and whether they fit here."""
    from cogumi.doctor import memory_note
    from cogumi.models.registry import list_models
    from cogumi.models.resources import detect_local, estimate_for, plan

    cfg = load(config, set_)
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


@user_errors
def doctor_cmd(config: ConfigOpt = None, set_: SetOpt = None,
               ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="also list the nodes of this Ray cluster")] = None,
               json_out: JsonOpt = False) -> None:
    """Check this machine: hardware, packages, the embedded model, and what fits."""
    from cogumi.doctor import run_checks

    cfg = load(config, set_)
    report = run_checks(cfg, ray_address)
    if json_out:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        from cogumi.doctor import render

        render(report, console)
    if not report["ok"]:
        raise typer.Exit(1)


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
                 json_out: JsonOpt = False) -> None:
    """Answer one prompt through any backend; print text, tokens/s and usage."""
    from cogumi.generate import GenerateRequest, run_generate, run_generate_on_ray

    cfg = load(config, set_)
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


def register(app: typer.Typer) -> None:
    """Add the core commands to ``app``."""
    app.command("config")(config_cmd)
    app.command("models")(models_cmd)
    app.command("doctor")(doctor_cmd)
    app.command("generate")(generate_cmd)
    app.command("submit")(submit_cmd)
