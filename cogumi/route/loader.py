"""Which router serves: the built-in cascade, or the trained artifact written by ``cogumi router``."""

from __future__ import annotations

from pathlib import Path

from cogumi.errors import CogumiError
from cogumi.route.artifact import RouterArtifact
from cogumi.route.builtin import CascadeRouter
from cogumi.route.contract import Router


def load_router(artifact: str | Path | None, threshold: float | None, mode: str) -> Router:
    """The router the serving layer uses.

    Args:
        artifact: a ``router/`` folder written by ``cogumi router``, or None for :class:`CascadeRouter`.
        threshold: keep the base answer at confidence >= this; None: the artifact's own operating
            threshold (the built-in router's default 0.8 without an artifact).
        mode: ``cascade`` (score the base answer first) or ``pre`` (route from the conversation alone).

    Raises:
        CogumiError: the folder does not exist or is not a router artifact.
    """
    if not artifact:
        return CascadeRouter(0.8 if threshold is None else threshold, needs_base_answer=(mode == "cascade"))
    path = Path(artifact)
    if not path.is_dir():
        raise CogumiError(f"router artifact folder {path} does not exist", "serve.routing.artifact",
                          "run `cogumi router` first, or leave serve.routing.artifact empty for the built-in router")
    return RouterArtifact.load(path, mode=mode, threshold=threshold)
