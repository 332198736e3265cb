"""One Ray Serve application per test module (start-up is slow): base + 'code' LoRA modifier + keys."""

from __future__ import annotations

import pytest

from tests.unit.serve.support import code_lora, free_port  # noqa: F401

SERVE_KEY = "serve-test-key-0123456789"


class ServedApp:
    """A deployed Cogumi application on a loopback port."""

    def __init__(self, url: str, key: str):
        self.url, self.key = url, key
        self.v1 = url + "/v1"


@pytest.fixture(scope="module")
def served(ray_local, code_lora):  # noqa: F811 - the fixture imported above
    from ray import serve

    from cogumi.serve.config import ServeConfig
    from cogumi.serve.deployments import APP_NAME, build_app

    port = free_port()
    cfg = ServeConfig.model_validate({
        "auth": "keys", "modifiers": {"code": str(code_lora)}, "max_tokens_limit": 256,
        "base": {"n_ctx": 512, "logits_all": True},
        "router_deployment": {"num_cpus": 0.2}, "base_deployment": {"num_cpus": 0.6},
        "modifier_deployment": {"num_cpus": 0.6}})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(cfg, environ={"COGUMI_API_KEY": SERVE_KEY}), name=APP_NAME, route_prefix="/")
    yield ServedApp(f"http://127.0.0.1:{port}", SERVE_KEY)
    serve.shutdown()
