"""The OpenAI-compatible API over real HTTP (uvicorn) with in-process models: the openai client,
routing transparency, streaming, auth, rate limits, validation and a fuzz run."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import openai
import pytest

from tests.unit.serve.support import TEST_KEY, ApiServer, make_service

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
CODE_Q = [{"role": "user", "content": "Write a python function that adds two numbers."}]


@pytest.fixture(scope="module")
def client(api_server):
    return openai.OpenAI(base_url=api_server.url + "/v1", api_key=TEST_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def unsure_server(base_worker, modifier_worker):
    """Threshold 1.0: the base is never confident enough, so the cascade always escalates to a modifier."""
    from cogumi.serve.api import create_app
    from cogumi.serve.config import ServeConfig

    cfg = ServeConfig.model_validate({"auth": "open-local", "rate_limit": {"requests_per_minute": 60, "burst": 3}})
    server = ApiServer(create_app(make_service(base_worker, modifier_worker, threshold=1.0), cfg, None)).start()
    yield server
    server.stop()


def test_models_lists_routes(client):
    assert [m.id for m in client.models.list()] == ["cogumi", "cogumi/base", "cogumi/code"]
    assert client.models.retrieve("cogumi/code").id == "cogumi/code"


def test_chat_auto_route_is_transparent_in_body_and_headers(client):
    raw = client.chat.completions.with_raw_response.create(model="cogumi", messages=CODE_Q, max_tokens=16,
                                                           temperature=0)
    comp = raw.parse()
    route = comp.model_extra["cogumi"]
    assert comp.choices[0].message.content and comp.usage.completion_tokens > 0
    assert route["route"] == raw.headers["x-cogumi-route"] and route["router"] == "cascade-default"
    assert route["reason"] in ("confident", "low-confidence") and 0 < route["confidence"] <= 1
    assert float(raw.headers["x-cogumi-confidence"]) == pytest.approx(route["confidence"], abs=1e-4)
    assert route["latency_ms"]["base"] > 0 and float(raw.headers["x-cogumi-latency-ms"]) > 0


def test_cascade_escalates_to_the_domain_modifier(unsure_server):
    c = openai.OpenAI(base_url=unsure_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    comp = c.chat.completions.create(model="cogumi", messages=CODE_Q, max_tokens=8, temperature=0)
    r = comp.model_extra["cogumi"]
    assert (r["route"], r["reason"], r["domain"]) == ("code", "low-confidence", "code")
    assert r["latency_ms"]["base"] > 0 and r["latency_ms"]["modifier"] > 0
    chat = c.chat.completions.create(model="cogumi", messages=[{"role": "user", "content": "hello"}], max_tokens=4)
    assert chat.model_extra["cogumi"]["reason"] == "no-domain"  # unsure, but no modifier fits


def test_escalation_skips_the_base_pass(client):
    convo = CODE_Q + [{"role": "assistant", "content": "def add(a, b): return a - b"},
                      {"role": "user", "content": "That's wrong, try again with the python code."}]
    r = client.chat.completions.create(model="cogumi", messages=convo, max_tokens=6).model_extra["cogumi"]
    assert (r["route"], r["reason"], r["escalation"]) == ("code", "escalation", 1.0)
    assert "base" not in r["latency_ms"]


def test_manual_override_by_model_and_header(client, api_server):
    forced = client.chat.completions.create(model="cogumi/code", messages=CODE_Q, max_tokens=6, temperature=0)
    assert forced.model_extra["cogumi"]["route"] == "code" and forced.model_extra["cogumi"]["reason"] == "override"
    assert 0 <= forced.model_extra["cogumi"]["latency_ms"]["adapter_switch"] < 50
    r = httpx.post(api_server.url + "/v1/chat/completions", headers=AUTH | {"X-Cogumi-Route": "base"}, timeout=120,
                   json={"model": "cogumi/code", "messages": CODE_Q, "max_tokens": 6, "temperature": 0})
    assert r.status_code == 200 and r.headers["x-cogumi-route"] == "base"
    assert r.json()["cogumi"]["confidence"] is None  # no cascade pass on an override


def test_streaming_sync_with_usage(client):
    stream = client.chat.completions.create(model="cogumi/base", messages=CODE_Q, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[0].model_extra["cogumi"]["route"] == "base"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals and finals[-1].model_extra["cogumi"]["latency_ms"]["total"] > 0
    assert chunks[-1].usage.completion_tokens > 0 and not chunks[-1].choices
    plain = client.chat.completions.create(model="cogumi/base", messages=CODE_Q, max_tokens=12, temperature=0)
    assert text == plain.choices[0].message.content  # the stream is the same greedy answer


def test_async_client_concurrent_and_streaming(api_server):
    async def run():
        c = openai.AsyncOpenAI(base_url=api_server.url + "/v1", api_key=TEST_KEY, max_retries=0, timeout=120)
        answers = await asyncio.gather(*[c.chat.completions.create(
            model="cogumi/base", messages=[{"role": "user", "content": f"Count to {i}"}], max_tokens=5)
            for i in (2, 3, 4)])
        pieces = [ch.choices[0].delta.content async for ch in await c.chat.completions.create(
            model="cogumi/code", messages=CODE_Q, max_tokens=6, stream=True) if ch.choices and ch.choices[0].delta.content]
        await c.close()
        return answers, pieces

    answers, pieces = asyncio.run(run())
    assert all(a.choices[0].message.content for a in answers) and pieces


def test_text_completions_plain_list_and_stream(client):
    one = client.completions.create(model="cogumi/base", prompt="Once upon a time", max_tokens=6, temperature=0)
    assert one.choices[0].text and one.model_extra["cogumi"]["route"] == "base"
    two = client.completions.create(model="cogumi/base", prompt=["Red is", "Blue is"], max_tokens=4, temperature=0)
    assert [c.index for c in two.choices] == [0, 1] and two.usage.completion_tokens > 0
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="cogumi/base", prompt="Once upon a time", max_tokens=6, temperature=0, stream=True) if c.choices)
    assert streamed == one.choices[0].text
    lp = client.completions.create(model="cogumi/base", prompt="One, two,", max_tokens=3, temperature=0, logprobs=2)
    assert len(lp.choices[0].logprobs.token_logprobs) == len(lp.choices[0].logprobs.tokens) > 0


def test_chat_logprobs_on_request(client):
    comp = client.chat.completions.create(model="cogumi/base", messages=CODE_Q, max_tokens=4, temperature=0,
                                          logprobs=True, top_logprobs=2)
    content = comp.choices[0].logprobs.content
    assert content and all(t.logprob <= 0 and len(t.top_logprobs) <= 2 for t in content)


@pytest.mark.parametrize("body,status,code", [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    (json.dumps({"model": "cogumi", "messages": []}), 400, "invalid_value"),
    (json.dumps({"model": "cogumi", "messages": [{"role": "user", "content": "  "}]}), 400, "invalid_value"),
    (json.dumps({"model": "cogumi", "messages": [{"role": "robot", "content": "hi"}]}), 400, "invalid_value"),
    (json.dumps({"model": "cogumi", "messages": [{"role": "user", "content": 5}]}), 400, "invalid_value"),
    (json.dumps({"model": "cogumi", "messages": CODE_Q, "temperature": "hot"}), 400, "invalid_value"),
    (json.dumps({"model": "cogumi", "messages": CODE_Q, "temperature": 3}), 400, "invalid_value"),
    (json.dumps({"model": "cogumi", "messages": CODE_Q, "max_tokens": 10**9}), 400, "invalid_value"),
    (json.dumps({"model": "cogumi", "messages": CODE_Q, "max_tokens": 0}), 400, "invalid_value"),
    (json.dumps({"model": "cogumi", "messages": CODE_Q, "n": 3}), 400, "invalid_value"),
    (json.dumps({"model": "cogumi", "messages": CODE_Q, "stop": ["a", "b", "c", "d", "e"]}), 400, "invalid_value"),
    (json.dumps({"model": "gpt-4o", "messages": CODE_Q}), 404, "model_not_found"),
    (json.dumps({"model": "cogumi/math", "messages": CODE_Q}), 404, "model_not_found"),
    (json.dumps({"model": "cogumi/../../etc/passwd", "messages": CODE_Q}), 400, "invalid_modifier"),
    (json.dumps({"model": "cogumi", "messages": [{"role": "user", "content": "word " * 2000}],
                 "max_tokens": 16}), 400, "context_length_exceeded"),
])
def test_bad_requests_get_openai_errors(api_server, body, status, code):
    r = httpx.post(api_server.url + "/v1/chat/completions", content=body, timeout=60,
                   headers=AUTH | {"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error"
    if code:
        assert err["code"] == code


def test_openai_client_raises_typed_errors(client, api_server):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=CODE_Q)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="cogumi", messages=CODE_Q, max_tokens=100_000)
    bad = openai.OpenAI(base_url=api_server.url + "/v1", api_key="wrong-key-123456", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_auth_missing_wrong_and_never_logged(api_server, caplog):
    caplog.set_level(logging.INFO, logger="cogumi.serve")
    wrong = "sk-wrong-" + "z" * 20
    r1 = httpx.get(api_server.url + "/v1/models")
    r2 = httpx.post(api_server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {wrong}"},
                    json={"model": "cogumi", "messages": CODE_Q})
    r3 = httpx.get(api_server.url + "/v1/models", headers=AUTH)
    assert (r1.status_code, r2.status_code, r3.status_code) == (401, 401, 200)
    assert r1.json()["error"]["code"] == "invalid_api_key"
    logged = caplog.text
    assert "caller=key-" in logged  # requests are logged with a key id ...
    assert TEST_KEY not in logged and wrong not in logged  # ... never with a key
    assert httpx.get(api_server.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(api_server.url + "/ready", headers=AUTH).json()
    assert ready["ready"] and ready["auth"] == "keys" and "cogumi/code" in ready["models"]
    assert httpx.get(api_server.url + "/ready").json() == {"ready": True}  # no details without a key


def test_oversized_body_is_413(api_server):
    big = json.dumps({"model": "cogumi", "messages": [{"role": "user", "content": "x" * 1_100_000}]})
    r = httpx.post(api_server.url + "/v1/chat/completions", content=big, headers=AUTH, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_rate_limit_is_per_caller_with_retry_after(unsure_server):
    url = unsure_server.url + "/v1/chat/completions"
    body = {"model": "cogumi", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}  # 400, still counted
    codes = [httpx.post(url, json=body).status_code for _ in range(5)]
    assert codes[:3] == [400, 400, 400] and codes[3:] == [429, 429]
    r = httpx.post(url, json=body)
    assert r.json()["error"]["type"] == "rate_limit_error" and int(r.headers["retry-after"]) >= 1


def test_client_disconnect_mid_stream_stops_generation(api_server, client, base_worker):
    import time

    count = [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]  # 250 tokens take > 5 s
    with httpx.stream("POST", api_server.url + "/v1/chat/completions", headers=AUTH, timeout=60,
                      json={"model": "cogumi/base", "messages": count, "max_tokens": 250, "temperature": 0,
                            "stream": True}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break  # hang up after the first token
    hung_up = time.perf_counter()
    while base_worker._lock.locked() and time.perf_counter() - hung_up < 30:
        time.sleep(0.05)
    assert time.perf_counter() - hung_up < 3.0  # generation stopped soon after the client left
    after = client.chat.completions.create(model="cogumi/base", messages=CODE_Q, max_tokens=4)
    assert after.choices[0].message.content


def test_fuzzed_chat_bodies_never_5xx(api_server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=20)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=8), inner, max_size=3), max_leaves=6)
    message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", ""]),
                                     "content": values})
    body = st.fixed_dictionaries(
        {"model": st.sampled_from(["cogumi", "cogumi/base", "cogumi/code", "cogumi/..", "x"]) | values},
        optional={"messages": st.lists(message, max_size=3) | values, "max_tokens": values,
                  "temperature": values, "top_p": values, "stream": values, "stop": values, "n": values,
                  "logprobs": values, "top_logprobs": values, "seed": values})
    http = httpx.Client(base_url=api_server.url, headers=AUTH, timeout=60)
    statuses = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(body)
    def check(b):
        if isinstance(b.get("max_tokens"), int) and not isinstance(b.get("max_tokens"), bool):
            b["max_tokens"] = max(-5, min(b["max_tokens"], 3))  # keep generations short when valid
        b["stream"] = False if not isinstance(b.get("stream"), bool) else b["stream"]
        r = http.post("/v1/chat/completions", json=b)
        statuses.append(r.status_code)
        assert r.status_code < 500, (b, r.text)
        if r.status_code >= 400:
            assert "error" in r.json()

    check()
    assert http.get("/health").status_code == 200 and any(s == 400 for s in statuses)
