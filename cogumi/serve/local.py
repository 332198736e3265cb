"""The served system in one process: the same workers, router and routing service as Ray Serve, no HTTP.

:func:`build_app` in :mod:`cogumi.serve.deployments` puts these parts into three
deployments; evaluations that must measure exactly what is served (the pipeline's
final start-vs-served table) build them here instead, so no port or replica is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from cogumi.serve.config import ServeConfig
from cogumi.route.loader import load_router
from cogumi.serve.service import ChatService, LocalClient
from cogumi.serve.worker import ModelWorker, resolve_adapters


@dataclass
class LocalSystem:
    """A :class:`ChatService` over in-process workers, and the adapters it serves."""

    service: ChatService
    adapters: dict[str, str]
    workers: list[ModelWorker]

    def close(self) -> None:
        """Free every model."""
        for w in self.workers:
            w.close()


def build_local_system(cfg: ServeConfig, n_threads: int | None = None) -> LocalSystem:
    """The base worker, the modifier worker (when adapters exist) and the router of ``cfg``.

    Raises:
        ModelLoadError / CogumiError: missing model, adapters or router artifact.
    """
    adapters = resolve_adapters(cfg.adapters_dir, cfg.modifiers, cfg.base.backend)
    update = {"n_threads": n_threads} if n_threads else {}
    base = ModelWorker(cfg.base.model_copy(update=update))
    workers = [base]
    mods = None
    if adapters:
        mods = ModelWorker(cfg.base.model_copy(update={**update, "logits_all": False}), adapters)
        workers.append(mods)
    routing = cfg.routing
    router = load_router(routing.artifact, routing.confidence_threshold, routing.mode)
    service = ChatService(LocalClient(base), LocalClient(mods) if mods else None, sorted(adapters), router, routing,
                          cfg.model_name)
    return LocalSystem(service, adapters, workers)
