"""`cogumi serve` attached to a cluster where Serve already runs another application:
it deploys next to it and, when stopped, removes only its own application."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.unit.serve.support import free_port

pytestmark = pytest.mark.integration


def test_stopping_cogumi_serve_leaves_other_serve_apps_running(ray_local):
    from ray import serve

    from cogumi.serve.config import ServeConfig
    from cogumi.serve.runner import run_server

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    def other(request) -> str:
        return "the other app"

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(other.bind(), name="other", route_prefix="/other")
        cfg = ServeConfig.model_validate({
            "auth": "open-local", "port": free_port(), "base": {"n_ctx": 256},  # its port is ignored: Serve runs
            "router_deployment": {"num_cpus": 0.1}, "base_deployment": {"num_cpus": 0.1}})
        stop, urls, errors = threading.Event(), [], []

        def ready(url: str) -> None:
            urls.append(url)
            try:
                assert httpx.get(url + "/v1/models", timeout=30).status_code == 200
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            stop.set()

        runner = threading.Thread(target=run_server, args=(cfg,), kwargs={"on_ready": ready, "stop": stop})
        runner.start()
        runner.join(timeout=180)
        assert not runner.is_alive() and not errors and urls == [f"http://127.0.0.1:{port}"]
        apps = serve.status().applications
        assert set(apps) == {"other"} and apps["other"].status == "RUNNING"
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=30).text == "the other app"
    finally:
        serve.shutdown()
