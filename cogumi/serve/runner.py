"""Run the Serve application in the foreground until Ctrl-C / SIGTERM (``cogumi serve``).

On the way out it removes only what it added: its own application (and only when it
deployed it), and Serve itself only when Serve was not running before and no other
application is left. Attached to a cluster where Serve already runs, other
applications keep running and Serve's HTTP options stay as they are.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from cogumi.errors import CogumiError
from cogumi.raycluster import connect
from cogumi.serve.config import ServeConfig

log = logging.getLogger("cogumi.serve")


def check_port_free(host: str, port: int) -> None:
    """Fail early (instead of a Serve proxy that never binds) when ``host:port`` is taken.

    Raises:
        CogumiError: the port is in use or the host cannot be bound.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise CogumiError(f"cannot listen on {host}:{port} ({exc.strerror})", "serve.host / serve.port",
                              "stop the process using it or pass another --port") from None


def run_server(cfg: ServeConfig, ray_address: str | None = None, on_ready: Callable[[str], None] | None = None,
               stop: threading.Event | None = None) -> None:
    """Start Ray (or join ``ray_address``), deploy the app, block until a signal, then remove what it added.

    Args:
        cfg: the serve section (host, port, models, adapters, auth).
        ray_address: an existing cluster (``auto`` or ``host:port``); default a local one.
        on_ready: called with the base URL once the app answers.
        stop: set it to stop without a signal (tests); SIGINT/SIGTERM also set it.

    Raises:
        CogumiError: bad keys/adapters/port, or the application failed to deploy.
    """
    import ray
    from ray import serve

    from cogumi.serve.deployments import APP_NAME, build_app

    app = build_app(cfg)  # checks keys and adapters before anything starts
    if not ray.is_initialized() and ray_address is None:
        check_port_free(cfg.host, cfg.port)  # a fresh local cluster: fail before starting Ray
    stop = stop or threading.Event()
    previous: dict[int, Any] = {}

    def catch_signals() -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old = signal.signal(sig, lambda *_: stop.set())
                previous.setdefault(sig, old)

    catch_signals()
    started_ray = not ray.is_initialized()
    serve_was_running, deployed = False, False
    try:
        if started_ray:
            connect(ray_address, log_to_driver=False, include_dashboard=False)
            catch_signals()  # ray.init installs its own SIGTERM handler, which aborts the process
        before = serve.status()
        serve_was_running = bool(before.proxies or before.applications)
        if APP_NAME in before.applications:
            raise CogumiError(f"a Serve application named '{APP_NAME}' already runs on this Ray cluster",
                              "cogumi serve", f"stop the other `cogumi serve`, or remove it with `serve delete {APP_NAME}`")
        port = cfg.port
        if serve_was_running:
            port = _serve_port(cfg.port)
            log.info("Serve already runs on this cluster: deploying next to its %d application(s), port %d",
                     len(before.applications), port)
        else:
            check_port_free(cfg.host, cfg.port)
            serve.start(http_options={"host": cfg.host, "port": cfg.port})
        t0 = time.perf_counter()
        deployed = True  # from here on the app (or what a failed deploy left of it) is ours to remove
        try:
            serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        except RuntimeError as exc:
            raise CogumiError(f"the Serve application failed to deploy ({str(exc)[:300]}){_why(APP_NAME)}",
                              "cogumi serve", "check serve.base, the adapters and the replica logs under "
                              "/tmp/ray/session_latest/logs/serve") from None
        url = f"http://{cfg.host}:{port}"
        log.info("cogumi serving at %s (ready in %.1fs)", url, time.perf_counter() - t0)
        if on_ready:
            on_ready(url)
        while not stop.wait(0.5):
            pass
    finally:
        log.info("stopping cogumi serve")
        try:
            if ray.is_initialized():
                _remove_ours(deployed, serve_was_running)
        finally:
            if started_ray and ray.is_initialized():
                ray.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _remove_ours(deployed: bool, serve_was_running: bool) -> None:
    """Delete our application if we deployed it; stop Serve only if we started it and nothing else runs."""
    from ray import serve

    from cogumi.serve.deployments import APP_NAME

    if deployed and APP_NAME in serve.status().applications:
        serve.delete(APP_NAME)
    if not serve_was_running and not serve.status().applications:
        serve.shutdown()
    elif not serve_was_running:
        log.info("other Serve applications were deployed meanwhile: Serve keeps running")


def _serve_port(default: int) -> int:
    """The HTTP port of the Serve instance already running (Ray has no public getter for it)."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        return int(client.http_config.port) if client is not None else default
    except Exception:  # noqa: BLE001 - only used to print the URL
        return default


def _why(app_name: str) -> str:
    """The deployments' own failure messages (replica tracebacks, shortened)."""
    from ray import serve

    try:
        app = serve.status().applications[app_name]
    except Exception:  # noqa: BLE001 - best effort on an already failed start
        return ""
    msgs = [f"{name}: {d.message.strip().splitlines()[-1][:300]}" for name, d in app.deployments.items()
            if d.message and d.message.strip()]
    return ("; " + "; ".join(msgs)) if msgs else ""
