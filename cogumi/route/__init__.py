"""Phase 4: the router — confidence features, calibration, router MLP, domain classifier, escalation.

``load_router(path, threshold=None, mode="cascade")`` is what the serving layer calls;
``cogumi router`` builds the artifact it loads. Imported lazily: ``cogumi.config``
imports ``cogumi.route.config`` and must not pull in the models stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RouterArtifact", "load_router"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cogumi.route import artifact

        return getattr(artifact, name)
    raise AttributeError(f"module 'cogumi.route' has no attribute {name!r}")
