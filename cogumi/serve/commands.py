"""``cogumi serve``: the routed system behind an OpenAI-compatible API on Ray Serve."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cogumi.cli.options import ConfigOpt, SetOpt, console, load, user_errors


@user_errors
def serve_cmd(config: ConfigOpt = None, set_: SetOpt = None,
              port: Annotated[Optional[int], typer.Option("--port", "-p", help="HTTP port (default serve.port)")] = None,
              host: Annotated[Optional[str], typer.Option("--host", help="bind address (default serve.host)")] = None,
              ray_address: Annotated[Optional[str], typer.Option(
                  "--ray-address", help="deploy onto this Ray cluster ('auto' or host:port); default: local")] = None,
              run: Annotated[Optional[str], typer.Option(
                  "--run", help="serve what this pipeline run promoted (e.g. runs/local): its GGUF, adapters and "
                                "router, with the run's recorded config unless --config is given")] = None,
              ) -> None:
    """Serve the base model, the modifiers and the router: OpenAI API at /v1, chat page at /.

    Blocks until Ctrl-C or SIGTERM, then shuts Serve down cleanly. Keys: set
    COGUMI_API_KEY=key1,key2 (or serve.api_keys_file); serve.auth: open-local
    serves without keys only when no key is set.
    """
    import logging

    from cogumi.serve.runner import run_server

    if run:
        from cogumi.pipeline.stages import config_for_run

        cfg = config_for_run(run, list(set_ or []), str(config) if config is not None else None)
        s = cfg.serve
        console.print(f"serving run {run}: base {s.base.model}, adapters {s.adapters_dir or 'none'}, router "
                      f"{s.routing.artifact or 'built-in'}", highlight=False)
    else:
        cfg = load(config, set_)
    updates = {k: v for k, v in {"port": port, "host": host}.items() if v is not None}
    serve_cfg = cfg.serve.model_validate(cfg.serve.model_dump() | updates)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def ready(url: str) -> None:
        console.print(f"[bold green]cogumi serving[/] at {url}  (chat page {url}/ · API {url}/v1 · Ctrl-C stops)",
                      highlight=False)

    run_server(serve_cfg, ray_address, on_ready=ready)
    console.print("stopped", style="dim")


def register(app: typer.Typer) -> None:
    """Add this phase's command to the ``cogumi`` app."""
    app.command("serve")(serve_cmd)
