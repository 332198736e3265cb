"""What every ``cogumi`` command shares: option types, the config loader, consoles, error mapping.

A leaf module: it imports nothing from the phases or from :mod:`cogumi.cli.app`, so a
phase's ``commands.py`` can import it without an import cycle.

Error mapping (:func:`user_errors`): a :class:`~cogumi.errors.CogumiError` or a pydantic
``ValidationError`` is a problem with the request — one paragraph (with the field path
for validation errors), exit status 2, no traceback. Anything else is unexpected (a
library error such as pyarrow's ``ArrowInvalid``, or a bug in cogumi): one line naming
the exception, exit status 1, and the full traceback with ``cogumi --debug <command>``
(or ``COGUMI_DEBUG=1``).
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, Optional, ParamSpec, TypeVar

import click
import typer
from pydantic import ValidationError
from rich.console import Console

from cogumi.config import CogumiConfig, describe_validation_error, load_config
from cogumi.errors import CogumiError

console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (default: built-in defaults)")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override, e.g. train.lora.r=32")]
ForceOpt = Annotated[bool, typer.Option("--force", help="rerun even if the stage is up to date")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster (default: RAY_ADDRESS or local)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the results as JSON")]

P = ParamSpec("P")
R = TypeVar("R")


class _Flags:
    """Process-wide command-line flags set by the app's callback (``--debug``)."""

    debug = False


def set_debug(on: bool) -> None:
    """Show full tracebacks of unexpected errors (the app's ``--debug`` flag)."""
    _Flags.debug = on


def load(config: Path | None, overrides: list[str] | None) -> CogumiConfig:
    """The resolved config: built-in defaults, then the ``--config`` file, then ``--set`` overrides."""
    return load_config(config, overrides or [])


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Map a command's exceptions to exit statuses (see the module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except CogumiError as exc:
            _fail(str(exc))
        except ValidationError as exc:
            _fail(describe_validation_error(exc, what=f"invalid {exc.title}"))
        except Exception as exc:  # noqa: BLE001 - the one place that reports unexpected errors
            name = type(exc).__name__
            if _Flags.debug:
                err_console.print("".join(traceback.format_exception(exc)), highlight=False, markup=False,
                                  soft_wrap=True)
            err_console.print(f"[bold red]unexpected error:[/] {name}: {exc}", highlight=False, soft_wrap=True)
            if not _Flags.debug:
                err_console.print("[dim]not an error cogumi anticipated; rerun as `cogumi --debug ...` for the "
                                  "traceback[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _fail(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None
