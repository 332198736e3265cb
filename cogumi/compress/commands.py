"""``cogumi compress``: run Phase 2 (or restore a zstd archive) from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cogumi.cli.options import ConfigOpt, SetOpt, console, err_console, load, user_errors


@user_errors
def compress_cmd(config: ConfigOpt = None, set_: SetOpt = None,
                 model: Annotated[Optional[str], typer.Option(help="merged HF model folder (default: "
                                                              "compress.model, else the student)")] = None,
                 force: Annotated[bool, typer.Option("--force", help="rerun steps whose manifests match")] = False,
                 no_ray: Annotated[bool, typer.Option("--no-ray", help="run the steps in this process")] = False,
                 restore: Annotated[Optional[Path], typer.Option(help="a <file>.zstd.json archive record: "
                                                                 "decompress and verify it instead")] = None,
                 output: Annotated[Optional[Path], typer.Option(help="with --restore: where to write the file "
                                                                "(default: verify only)")] = None,
                 json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Prune (2:4), quantise (AWQ/GPTQ W4A16), export GGUF (f16, Q5_K_M...), zstd; gate each step on perplexity."""
    if restore is not None:
        from cogumi.compress.archive import unpack

        result = unpack(restore, output)
        if json_out:
            console.print_json(json.dumps(result))
        else:
            target = output or "(verified only)"
            console.print(f"restored {result['bytes']:,} bytes to {target}; SHA-256 {result['sha256']} matches "
                          f"the archive record", highlight=False)
        return
    from cogumi.compress.pipeline import run_compress

    overrides = list(set_ or [])
    if model:
        overrides.append(f"compress.model={model}")
    cfg = load(config, overrides)
    result = run_compress(cfg, force=force, use_ray=not no_ray)
    if json_out:
        console.print_json(json.dumps(result, default=str))
        return
    report = Path(result["report"])
    console.print(report.read_text() if report.is_file() else "(no report)", highlight=False, markup=False)
    skipped = [s for s, m in result["steps"].items() if m.get("skipped")]
    if skipped:
        err_console.print(f"[dim]unchanged steps reused: {', '.join(skipped)} (use --force to rerun)[/]")
    err_console.print(f"[dim]run folder: {result['run']}[/]")


def register(app: typer.Typer) -> None:
    """Add this phase's command to the ``cogumi`` app."""
    app.command("compress")(compress_cmd)
