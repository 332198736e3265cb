"""Ray Serve on a 3-node cluster: two BaseModel replicas on different nodes, then one SIGKILLed.

The application is Cogumi's own (``build_app``: Router ingress + BaseModel over the
embedded SmolLM2 GGUF, no modifiers), reached over HTTP with the ``openai`` client
through a proxy on the head node. Each BaseModel replica reserves 0.6 CPU and each worker
node has one, so the two replicas must sit on different nodes. Part ``fault`` kills one
replica's process and keeps sending requests until the Serve controller has replaced it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.integration.cluster.scenarios.common import actors, kill_pid, main, node_names, part, wait_for

REPLICA = "ServeReplica:cogumi:BaseModel"
MESSAGES = [{"role": "user", "content": "Say hello."}]


def replicas(alive_only: bool = True) -> list[Any]:
    return [a for a in actors(REPLICA) if a.state == "ALIVE" or not alive_only]


def handled(actor: Any) -> int:
    """Requests a replica has answered: the ``CALL generate OK`` lines of its Serve log.

    The replica's log file is named after its replica id, the last part of the actor's
    name (``SERVE_REPLICA::cogumi#BaseModel#<id>``); Ray's state API reads it from its node.
    """
    from ray.util.state import get_log

    rid = actor.name.rsplit("#", 1)[-1]
    text = "".join(get_log(filename=f"serve/replica_cogumi_BaseModel_{rid}.log", node_id=actor.node_id,
                           tail=100_000))
    return sum("CALL generate OK" in line for line in text.splitlines())


def ask(client) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        comp = client.chat.completions.create(model="cogumi/base", messages=MESSAGES, max_tokens=4, temperature=0)
        return {"ok": bool(comp.choices[0].message.content), "s": round(time.monotonic() - t0, 2),
                "route": (comp.model_extra.get("cogumi") or {}).get("route")}
    except Exception as exc:  # noqa: BLE001 - failures are what the fault part counts
        return {"ok": False, "s": round(time.monotonic() - t0, 2), "error": f"{type(exc).__name__}: {exc}"[:300]}


def burst(client, n: int) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: ask(client), range(n)))


def describe(acts: list[Any]) -> list[dict[str, Any]]:
    names = node_names()
    return [{"actor_id": a.actor_id, "node": names.get(a.node_id, a.node_id), "pid": a.pid, "state": a.state,
             "handled": handled(a)} for a in acts]


def spread(client, url: str) -> dict[str, Any]:
    import httpx

    answers = [ask(client)] + burst(client, 6)
    return {"models": [m.id for m in client.models.list()], "ready": httpx.get(url + "/ready", timeout=30).json(),
            "answers": answers, "replicas": describe(replicas())}


def running_replicas() -> int:
    """BaseModel replicas the Serve controller reports RUNNING (started and healthy)."""
    from ray import serve

    deployment = serve.status().applications["cogumi"].deployments["BaseModel"]
    return deployment.replica_states.get("RUNNING", 0)


def fault(client) -> dict[str, Any]:
    before = replicas()
    victim = before[-1]
    names = node_names()
    t_kill = time.monotonic()
    kill_pid(victim.pid)
    old = {a.actor_id for a in before}
    during: list[dict[str, Any]] = []

    def recovered() -> Any:
        during.append(ask(client) | {"t": round(time.monotonic() - t_kill, 2)})
        fresh = [a for a in replicas() if a.actor_id not in old]
        return fresh if fresh and running_replicas() == 2 and all(r["ok"] for r in during[-2:]) else None

    fresh = wait_for(recovered, 180, every_s=0.5)
    t_new = round(time.monotonic() - t_kill, 1)
    after: list[dict[str, Any]] = []
    for _ in range(5):  # until the replacement has had its share (the router learns of it by long poll)
        after += burst(client, 6)
        if fresh and handled(fresh[0]) > 0:
            break
    return {"killed": {"actor_id": victim.actor_id, "pid": victim.pid, "node": names.get(victim.node_id)},
            "recovered_after_s": t_new if fresh else None, "during": during, "after": after,
            "replicas_after": describe(replicas()), "victim_state": next(
                (a.state for a in replicas(alive_only=False) if a.actor_id == victim.actor_id), None)}


def run(args, result: dict[str, Any]) -> None:
    import openai
    from ray import serve

    from cogumi.serve.config import ServeConfig
    from cogumi.serve.deployments import APP_NAME, build_app
    from tests.support.openai_server import free_port

    port = free_port()
    cfg = ServeConfig.model_validate({
        "auth": "open-local", "max_tokens_limit": 64, "base": {"n_ctx": 512, "logits_all": True},
        "router_deployment": {"num_cpus": 0.2}, "base_deployment": {"num_cpus": 0.6, "min_replicas": 2,
                                                                     "max_replicas": 2}})
    # one HTTP proxy: every "node" of this cluster shares the machine's ports
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    t0 = time.monotonic()
    serve.run(build_app(cfg, environ={}), name=APP_NAME, route_prefix="/")
    result["deploy_seconds"] = round(time.monotonic() - t0, 1)
    url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
    try:
        part(result, "spread", lambda: spread(client, url))
        part(result, "fault", lambda: fault(client))
    finally:
        serve.shutdown()


if __name__ == "__main__":
    main(run)
