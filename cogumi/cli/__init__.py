"""The ``cogumi`` command line.

Modules: ``options`` (the leaf every command imports: option types, config loader,
consoles, error mapping), ``core`` (config, models, doctor, generate, submit) and
``application`` (the Typer ``app`` assembling the core and each phase's ``commands.register``).

``app`` and ``main`` are imported from :mod:`cogumi.cli.application` on first use, so that a
phase's ``commands`` module can import :mod:`cogumi.cli.options` without this package
importing every phase back (which would be an import cycle).
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cogumi.cli import application

        return getattr(application, name)
    raise AttributeError(f"module 'cogumi.cli' has no attribute {name!r}")
