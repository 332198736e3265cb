"""The ``cogumi`` Typer app: the core commands plus each phase's, and the console-script entry point."""

from __future__ import annotations

from typing import Annotated

import typer

from cogumi.cli import core
from cogumi.cli.options import set_debug
from cogumi.compress import commands as compress_commands
from cogumi.curate import commands as curate_commands
from cogumi.evaluate import commands as evaluate_commands
from cogumi.modifiers import commands as modifiers_commands
from cogumi.pipeline import commands as pipeline_commands
from cogumi.route import commands as route_commands
from cogumi.serve import commands as serve_commands
from cogumi.train import commands as train_commands

app = typer.Typer(help="Cogumi: distil, compress, route and serve a small LLM system on Ray.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _options(debug: Annotated[bool, typer.Option(
        "--debug", envvar="COGUMI_DEBUG",
        help="print the full traceback of unexpected errors (those not about your config or input)")] = False,
             ) -> None:
    """Cogumi: distil, compress, route and serve a small LLM system on Ray."""
    set_debug(debug)


# Help lists the commands in this order: core first, then the phases in pipeline order.
for _phase in (core, curate_commands, serve_commands, train_commands, compress_commands, route_commands,
               evaluate_commands, modifiers_commands, pipeline_commands):
    _phase.register(app)


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
