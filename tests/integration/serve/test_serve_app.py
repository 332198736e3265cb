"""The real Ray Serve application over real HTTP: Router ingress + BaseModel + multiplexed Modifiers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

CODE_Q = [{"role": "user", "content": "Write a python function that adds two numbers."}]
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served.v1, api_key=served.key, max_retries=0, timeout=180)


def test_models_and_probes(served, client):
    assert [m.id for m in client.models.list()] == ["cogumi", "cogumi/base", "cogumi/code"]
    assert httpx.get(served.url + "/health").json() == {"status": "ok"}
    auth = {"Authorization": f"Bearer {served.key}"}
    ready = httpx.get(served.url + "/ready", headers=auth, timeout=30).json()
    assert ready["ready"] and ready["base"] == "smollm2-135m-instruct" and ready["modifiers"] == ["code"]
    assert httpx.get(served.url + "/ready", timeout=30).json() == {"ready": True}  # no details without a key
    assert httpx.get(served.v1 + "/models/%FF").status_code == 400  # was a 500 in the metrics
    assert "<title>Cogumi chat</title>" in httpx.get(served.url + "/").text


def test_routed_chat_through_deployment_handles(client):
    raw = client.chat.completions.with_raw_response.create(model="cogumi", messages=CODE_Q, max_tokens=16,
                                                           temperature=0)
    comp = raw.parse()
    route = comp.model_extra["cogumi"]
    assert comp.choices[0].message.content and route["router"] == "cascade-default"
    assert raw.headers["x-cogumi-route"] == route["route"] and route["confidence"] is not None
    assert route["latency_ms"]["base"] > 0


def test_multiplexed_modifier_changes_the_answer_and_swaps_back(client):
    def ask(model: str) -> str:
        return client.chat.completions.create(model=model, messages=CODE_Q, max_tokens=10,
                                              temperature=0).choices[0].message.content

    base, code = ask("cogumi/base"), ask("cogumi/code")
    assert code != base
    assert ask("cogumi/code") == code  # the adapter stays loaded and deterministic


def test_streaming_sync_and_async(client, served):
    chunks = list(client.chat.completions.create(model="cogumi/code", messages=CODE_Q, max_tokens=8,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].model_extra["cogumi"]["route"] == "code" and chunks[-1].usage.completion_tokens > 0

    async def run():
        c = openai.AsyncOpenAI(base_url=served.v1, api_key=served.key, max_retries=0, timeout=180)
        done = await asyncio.gather(*[c.chat.completions.create(
            model="cogumi/base", messages=[{"role": "user", "content": f"Say {w}"}], max_tokens=4) for w in "ab"])
        text = "".join([ch.choices[0].delta.content or "" async for ch in await c.chat.completions.create(
            model="cogumi", messages=CODE_Q, max_tokens=6, stream=True) if ch.choices])
        await c.close()
        return done, text

    done, text = asyncio.run(run())
    assert all(d.choices[0].message.content for d in done) and text


def test_errors_cross_the_handles_as_4xx(served, client):
    auth = {"Authorization": f"Bearer {served.key}"}
    r = httpx.post(served.v1 + "/chat/completions", headers=auth, timeout=60,
                   json={"model": "cogumi", "messages": [{"role": "user", "content": "word " * 2000}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="cogumi/math", messages=CODE_Q)
    assert httpx.get(served.v1 + "/models").status_code == 401
    assert httpx.get(served.v1 + "/models", headers={"Authorization": "Bearer wrong-key-99999"}).status_code == 401


def test_disconnect_mid_stream_then_keeps_serving(served, client):
    with httpx.stream("POST", served.v1 + "/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {served.key}"},
                      json={"model": "cogumi/base", "stream": True, "max_tokens": 250,
                            "messages": [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]}) as r:
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break
    t0 = time.perf_counter()
    after = client.chat.completions.create(model="cogumi/base", messages=CODE_Q, max_tokens=4)
    assert after.choices[0].message.content
    assert time.perf_counter() - t0 < 15  # the abandoned 250-token generation did not hold the replica


def test_disconnect_during_a_plain_answer_frees_the_base(served, client):
    import json
    import socket

    data = json.dumps({"model": "cogumi/base", "max_tokens": 250, "temperature": 0,
                       "messages": [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]}).encode()
    socks = [socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1]))) for _ in range(3)]
    for sock in socks:  # one generates, two wait in the replica's queue
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {served.key}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    time.sleep(1.5)  # generating now (each 250-token answer takes over 5 s here)
    for sock in socks:
        sock.close()
    t0 = time.perf_counter()
    after = client.chat.completions.create(model="cogumi/base", messages=CODE_Q, max_tokens=2)
    assert after.choices[0].message.content
    assert time.perf_counter() - t0 < 3.0  # the abandoned generations stopped and freed the replica


def test_lm_eval_local_chat_completions(served, monkeypatch):
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalChatCompletion

    monkeypatch.setenv("OPENAI_API_KEY", served.key)
    lm = LocalChatCompletion(base_url=served.v1 + "/chat/completions", model="cogumi/base", num_concurrent=1,
                             max_retries=1, tokenized_requests=False, max_gen_toks=8)
    context = lm.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}])  # how lm-eval sends chats
    req = Instance("generate_until", {}, (context, {"until": ["\n\n"], "max_gen_toks": 8}), 0)
    out = lm.generate_until([req], disable_tqdm=True)
    assert len(out) == 1 and isinstance(out[0], str) and out[0].strip()


def test_api_keys_never_reach_ray_logs(served, ray_local):
    httpx.get(served.v1 + "/models", headers={"Authorization": "Bearer leaked-looking-key-777777"})
    assert httpx.get(served.v1 + "/models", headers={"Authorization": f"Bearer {served.key}"}).status_code == 200
    node = ray_local._private.worker.global_worker.node
    logs = Path(node.get_logs_dir_path())
    time.sleep(1.0)
    texts = [p.read_text(errors="ignore") for p in logs.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000]
    assert any("caller=key-" in t for t in texts)  # the router's access log is there ...
    assert not any(served.key in t or "leaked-looking-key-777777" in t for t in texts)  # ... without keys


def test_serve_config_yaml_matches_the_app():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from cogumi.serve.deployments import app_builder

    schema = ServeDeploySchema.model_validate(yaml.safe_load((REPO / "serve_config.yaml").read_text()))
    app_cfg = schema.applications[0]
    assert app_cfg.import_path == "cogumi.serve.deployments:app_builder"
    app = app_builder({**app_cfg.args, "config": str(REPO / app_cfg.args["config"])})
    names = _deployment_names(app)
    assert {d.name for d in app_cfg.deployments} <= names == {"Router", "BaseModel"}


def _deployment_names(app) -> set[str]:
    from ray.serve._private.build_app import build_app as flatten

    return {d.name for d in flatten(app, name="cogumi").deployments}


def test_request_metrics_reach_rays_prometheus_exporter(served, client, ray_local):
    client.chat.completions.create(model="cogumi/base", messages=CODE_Q, max_tokens=2)
    node = ray_local._private.worker.global_worker.node
    url = f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics"
    deadline, names = time.time() + 60, set()
    while time.time() < deadline:
        text = httpx.get(url, timeout=10).text
        names = {ln.split("{")[0] for ln in text.splitlines() if ln.startswith("ray_cogumi_")}
        if {"ray_cogumi_requests_total", "ray_cogumi_route_decisions_total"} <= names:
            break
        time.sleep(2)
    assert "ray_cogumi_requests_total" in names and "ray_cogumi_request_latency_ms_bucket" in names
    assert "ray_cogumi_route_decisions_total" in names and "ray_cogumi_completion_tokens_total" in names
