"""Phase 4: the router — confidence features, calibration, router MLP, domain classifier, escalation.

``load_router(path, threshold=None, mode="cascade")`` is what the serving layer calls;
``cogumi router`` builds the artifact it loads.
"""

from cogumi.route.artifact import RouterArtifact, load_router

__all__ = ["RouterArtifact", "load_router"]
