"""The Ray Serve application: ``Router`` ingress composed with ``BaseModel`` and ``Modifiers``.

- ``BaseModel``: a :class:`~cogumi.serve.worker.ModelWorker` over the base model
  (llama.cpp GGUF or transformers, through ``make_backend``).
- ``Modifiers``: the same base with the domain adapters, multiplexed with
  ``@serve.multiplexed``: requests carry ``multiplexed_model_id=<domain>``, Serve
  prefers replicas that already hold that adapter, and a replica keeps at most
  ``serve.max_adapters_per_replica`` loaded (LRU). Swapping never reloads the base.
- ``Router``: the FastAPI ingress (:func:`cogumi.serve.api.create_app`) reaching the
  others through deployment handles.

:func:`build_app` binds them from a :class:`ServeConfig`; :func:`app_builder` is the
``import_path`` target of ``serve_config.yaml`` (``serve run`` / ``serve deploy``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from typing import Any, cast

from ray import serve
from ray.serve import Deployment
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from cogumi.config_base import ModelConfig
from cogumi.serve.api import create_app
from cogumi.serve.auth import load_key_digests
from cogumi.serve.config import BatchingSettings, DeploymentSettings, ServeConfig, VllmSettings
from cogumi.serve.metrics import ServeMetrics
from cogumi.route.loader import load_router
from cogumi.serve.service import ChatService
from cogumi.serve.streaming import call_in_thread, iterate_in_thread
from cogumi.serve.worker import ModelWorker, resolve_adapters

APP_NAME = "cogumi"


@serve.deployment(name="BaseModel")
class BaseModel:
    """The base model alone (with token logprobs for the confidence cascade)."""

    def __init__(self, model: dict[str, Any], batching: dict[str, Any] | None = None,
                 vllm: dict[str, Any] | None = None, adapters: dict[str, str] | None = None):
        # on vLLM the base replica serves the adapters too (one engine, LoRAs per request)
        self.worker = ModelWorker(ModelConfig.model_validate(model), adapters, _batching(batching),
                                  VllmSettings.model_validate(vllm) if vllm else None)

    async def generate(self, req: dict[str, Any]) -> dict[str, Any]:
        req.setdefault("adapter", None)
        # Serve cancels this task when the caller's request is cancelled (client gone): stop generating
        return await call_in_thread(lambda stop: self.worker.generate(req, stop))

    async def stream(self, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async for ev in iterate_in_thread(lambda stop: self.worker.stream(req, stop)):
            yield ev

    async def ready(self) -> str:
        return self.worker.backend.model_name


class _LoadedAdapter:
    """What ``@serve.multiplexed`` caches per adapter; unloading frees it on the worker."""

    def __init__(self, worker: ModelWorker, name: str):
        self.worker, self.name = worker, name

    def __del__(self):
        self.worker.unload_adapter(self.name)


@serve.deployment(name="Modifiers")
class Modifiers:
    """The base model plus hot-swappable domain adapters (multiplexed by domain name)."""

    def __init__(self, model: dict[str, Any], adapters: dict[str, str], max_loaded: int = 3,
                 batching: dict[str, Any] | None = None):
        self.worker = ModelWorker(ModelConfig.model_validate(model), adapters, _batching(batching))

        async def load(name: str) -> _LoadedAdapter:
            await asyncio.to_thread(self.worker.load_adapter, name)
            return _LoadedAdapter(self.worker, name)

        self.load_adapter = serve.multiplexed(max_num_models_per_replica=max_loaded)(load)

    async def _adapter(self, req: dict[str, Any]) -> None:
        name = req.get("adapter") or serve.get_multiplexed_model_id()
        req["adapter"] = name
        await self.load_adapter(name)

    async def generate(self, req: dict[str, Any]) -> dict[str, Any]:
        await self._adapter(req)
        return await call_in_thread(lambda stop: self.worker.generate(req, stop))

    async def stream(self, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        await self._adapter(req)
        async for ev in iterate_in_thread(lambda stop: self.worker.stream(req, stop)):
            yield ev

    async def ready(self) -> list[str]:
        return sorted(self.worker.paths)


def _batching(settings: dict[str, Any] | None) -> BatchingSettings | None:
    return BatchingSettings.model_validate(settings) if settings is not None else None


class HandleClient:
    """A :class:`~cogumi.serve.service.ModelClient` over a deployment handle."""

    def __init__(self, handle: DeploymentHandle, multiplexed: bool = False):
        self.handle, self.multiplexed = handle, multiplexed

    def _h(self, req: dict[str, Any]) -> DeploymentHandle:
        if self.multiplexed and req.get("adapter"):
            return self.handle.options(multiplexed_model_id=req["adapter"])
        return self.handle

    async def generate(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._h(req).generate.remote(req)

    async def stream(self, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        gen = cast(DeploymentResponseGenerator, self._h(req).options(stream=True).stream.remote(req))  # streamed
        try:
            async for ev in gen:
                yield ev
        finally:  # client gone or error: stop the replica's generation
            gen.cancel()


@serve.deployment(name="Router")
@serve.ingress()
class RouterIngress:
    """The ingress: OpenAI API, routing, auth, rate limits, metrics, chat page."""

    def __init__(self, base: DeploymentHandle, modifiers: DeploymentHandle | None, modifier_names: list[str],
                 cfg: dict[str, Any], key_digests: list[str] | None):
        self.cfg = ServeConfig.model_validate(cfg)
        self.base, self.modifiers, self.key_digests = base, modifiers, key_digests
        routing = self.cfg.routing
        router = load_router(routing.artifact, routing.confidence_threshold, routing.mode)
        self.service = ChatService(HandleClient(base), HandleClient(modifiers, multiplexed=True) if modifiers else None,
                                   modifier_names, router, routing, self.cfg.model_name)
        self.metrics = ServeMetrics(export=True)
        _log_like_serve("cogumi.serve")

    async def ready(self) -> dict[str, Any]:
        """Ping the model deployments (5 s each)."""
        state: dict[str, Any] = {"ready": True}
        for name, handle in (("base", self.base), ("modifiers", self.modifiers)):
            if handle is None:
                continue
            try:
                state[name] = await asyncio.wait_for(handle.ready.remote(), 5.0)
            except Exception as exc:  # noqa: BLE001 - reported as not ready
                state.update({"ready": False, name: f"unavailable ({type(exc).__name__})"})
        return state

    def __serve_build_asgi_app__(self):
        return create_app(self.service, self.cfg, self.key_digests, self.metrics, self.ready)


def _log_like_serve(name: str) -> None:
    """Send ``name``'s records (the API's access log) to this replica's Serve log file."""
    ours, theirs = logging.getLogger(name), logging.getLogger("ray.serve")
    ours.setLevel(logging.INFO)
    for handler in theirs.handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)
    ours.propagate = not theirs.handlers


def deployment_options(d: DeploymentSettings) -> dict[str, Any]:
    """Serve ``.options()`` for one deployment: resources, concurrency, replicas or autoscaling."""
    opts: dict[str, Any] = {"ray_actor_options": {"num_cpus": d.num_cpus, "num_gpus": d.num_gpus},
                            "max_ongoing_requests": d.max_ongoing_requests}
    if d.min_replicas == d.max_replicas:
        opts["num_replicas"] = d.max_replicas
    else:
        opts["autoscaling_config"] = {"min_replicas": d.min_replicas, "max_replicas": d.max_replicas,
                                      "target_ongoing_requests": d.target_ongoing_requests}
    return opts


def build_app(cfg: ServeConfig, environ: dict[str, str] | None = None) -> serve.Application:
    """Bind the three deployments for ``cfg`` (keys and adapters are checked here, before Ray starts them).

    Args:
        cfg: the serve section.
        environ: environment for ``COGUMI_API_KEY`` (default ``os.environ``).

    Returns:
        The Serve application (ingress: ``Router``).

    Raises:
        ConfigError / ModelLoadError: no keys where keys are required, missing adapters.
    """
    digests = load_key_digests(cfg.auth, cfg.api_keys_file, environ)
    adapters = resolve_adapters(cfg.adapters_dir, cfg.modifiers, cfg.base.backend)
    base_model = cfg.base.model_copy(update={"n_threads": _threads(cfg.base_deployment, cfg.base)})
    batching = cfg.batching.model_dump()
    if cfg.vllm.enabled:  # one vLLM engine serves base and modifiers (LoRA per request): no Modifiers replica
        base = _deployment(BaseModel).options(**deployment_options(cfg.base_deployment)).bind(
            base_model.model_dump(), batching, cfg.vllm.model_dump(), adapters)
        return _deployment(RouterIngress).options(**deployment_options(cfg.router_deployment)).bind(
            base, base, sorted(adapters), cfg.model_dump(mode="json"), digests)
    base = _deployment(BaseModel).options(**deployment_options(cfg.base_deployment)).bind(base_model.model_dump(),
                                                                                        batching)
    mods = None
    if adapters:
        mod_model = cfg.base.model_copy(update={"logits_all": False,
                                                "n_threads": _threads(cfg.modifier_deployment, cfg.base)})
        mods = _deployment(Modifiers).options(**deployment_options(cfg.modifier_deployment)).bind(
            mod_model.model_dump(), adapters, cfg.max_adapters_per_replica, batching)
    return _deployment(RouterIngress).options(**deployment_options(cfg.router_deployment)).bind(
        base, mods, sorted(adapters), cfg.model_dump(mode="json"), digests)


def _deployment(decorated: Any) -> Deployment:
    """A class under ``@serve.deployment`` as what it is at runtime (mypy does not apply class decorators)."""
    return cast(Deployment, decorated)


def _threads(d: DeploymentSettings, model: ModelConfig) -> int:
    """llama.cpp threads of a replica: explicit, else its CPU reservation rounded up.

    More threads than reserved cores make llama.cpp's spinning threads fight each
    other (measured here: 30 tokens took 0.8 s on 1 thread, 2.4 s on 2 under load).
    """
    return d.n_threads or model.n_threads or max(1, math.ceil(d.num_cpus))


def app_builder(args: dict[str, Any]) -> serve.Application:
    """``serve_config.yaml`` entry: ``args: {config: configs/local.yaml, set: ["serve.auth=keys"]}``."""
    from cogumi.config import load_config

    cfg = load_config(args.get("config"), list(args.get("set") or []))
    return build_app(cfg.serve)
