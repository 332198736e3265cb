"""The model side: adapter hot-swap on llama.cpp and PEFT, fast logprobs, context checks, streaming stop."""

from __future__ import annotations

import threading

import pytest

from cogumi.models.inference import SamplingParams
from cogumi.serve.worker import ModelWorker, RequestError, gen_request

ASK = [{"role": "user", "content": "Name three colours."}]


def greedy(n: int = 12, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, **kw)


def test_llamacpp_adapter_swaps_without_reload_and_reverts(modifier_worker):
    llm_before = modifier_worker.backend.llm
    base = modifier_worker.generate(gen_request("chat", greedy(), ASK))
    code = modifier_worker.generate(gen_request("chat", greedy(), ASK, adapter="code"))
    again = modifier_worker.generate(gen_request("chat", greedy(), ASK))
    assert code["text"] != base["text"]  # the LoRA really changes the model
    assert again["text"] == base["text"]  # and switching back restores the base exactly
    assert code["adapter"] == "code" and code["switch_ms"] < 50 and again["switch_ms"] < 50
    assert modifier_worker.backend.llm is llm_before  # never reloaded


def test_unloaded_adapter_reloads_on_demand(modifier_worker):
    modifier_worker.unload_adapter("code")
    modifier_worker.unload_adapter("code")  # idempotent
    assert modifier_worker.generate(gen_request("chat", greedy(4), ASK, adapter="code"))["adapter"] == "code"
    with pytest.raises(RequestError) as err:
        modifier_worker.generate(gen_request("chat", greedy(4), ASK, adapter="math"))
    assert err.value.status == 404


def test_base_worker_rejects_modifiers(base_worker):
    with pytest.raises(RequestError, match="serves no modifiers"):
        base_worker.generate(gen_request("chat", greedy(4), ASK, adapter="code"))


def test_chosen_logprobs_match_llamacpp_logprobs(base_worker):
    slow = base_worker.generate(gen_request("chat", greedy(10, logprobs=True, top_logprobs=3), ASK))
    fast = base_worker.generate(gen_request("chat", greedy(10, logprobs=True, top_logprobs=3), ASK,
                                            chosen_logprobs=True))
    assert fast["text"] == slow["text"]
    assert len(fast["logprobs"]) >= len(slow["logprobs"]) - 1 > 0
    for f, s in zip(fast["logprobs"], slow["logprobs"]):
        assert f["token"] == s["token"]
        assert f["logprob"] == pytest.approx(s["logprob"], abs=1e-3)
        assert list(f["top"]) == list(s["top"])  # the same 3 alternatives, best first
        assert list(f["top"].values()) == pytest.approx(list(s["top"].values()), abs=1e-3)


def test_context_length_is_checked_before_generating(base_worker):
    long = [{"role": "user", "content": "word " * 600}]
    with pytest.raises(RequestError) as err:
        base_worker.generate(gen_request("chat", greedy(8), long))
    assert err.value.status == 400 and err.value.code == "context_length_exceeded"
    with pytest.raises(RequestError):
        list(base_worker.stream(gen_request("chat", greedy(505), ASK)))  # about 11 prompt tokens + 505 > 512


def test_stream_yields_pieces_then_a_final_event_and_stops_early(base_worker):
    events = list(base_worker.stream(gen_request("chat", greedy(8), ASK)))
    assert events[-1]["done"] and events[-1]["text"] == "".join(e["text"] for e in events[:-1])
    assert events[-1]["usage"]["completion_tokens"] > 0
    stop = threading.Event()
    stop.set()
    early = list(base_worker.stream(gen_request("chat", greedy(40), ASK), stop))
    assert len(early) == 1 and early[-1]["finish_reason"] == "cancelled"  # stopped before it started


COUNT = [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]


def _stop_after(seconds: float) -> threading.Event:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return stop


@pytest.mark.parametrize("kind", ["chat", "complete"])
def test_stop_ends_a_running_generation_between_tokens(base_worker, kind):
    import time

    req = (gen_request("chat", greedy(300), COUNT) if kind == "chat"
           else gen_request("complete", greedy(300), prompt="1, 2, 3, 4,"))
    base_worker.generate({**req, "params": {**req["params"], "max_tokens": 1}})  # a new prompt's first pass is slow
    t0 = time.perf_counter()
    out = base_worker.generate(req, _stop_after(0.5))
    assert time.perf_counter() - t0 < 1.5  # 300 tokens take about 6 s here
    assert out["finish_reason"] == "cancelled" and 0 < out["usage"]["completion_tokens"] < 300
    events = list(base_worker.stream(req, _stop_after(0.5)))  # completions stream through generate
    assert events[-1]["finish_reason"] == "cancelled" and not base_worker._lock.locked()


def test_a_waiting_request_gives_up_when_stopped(base_worker):
    import time

    busy = threading.Thread(target=base_worker.generate, args=(gen_request("chat", greedy(300), COUNT),
                                                               _stop_after(1.0)))
    busy.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    out = base_worker.generate(gen_request("chat", greedy(8), ASK), _stop_after(0.2))
    assert time.perf_counter() - t0 < 0.6 and out["finish_reason"] == "cancelled" and out["text"] == ""
    busy.join(timeout=5)
    assert not busy.is_alive()


def test_peft_adapters_swap_on_transformers(tiny_llama_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from cogumi.config_base import ModelConfig

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
    for p in model.parameters():
        if p.requires_grad:
            p.data.mul_(40)  # make the random adapter clearly change greedy output
    model.save_pretrained(tmp_path / "code")
    w = ModelWorker(ModelConfig(backend="transformers", model=str(tiny_llama_dir), n_ctx=256),
                    {"code": str(tmp_path / "code")})
    try:
        prompt = "The quick brown fox"
        base = w.generate(gen_request("complete", greedy(8), prompt=prompt))
        code = w.generate(gen_request("complete", greedy(8), prompt=prompt, adapter="code"))
        again = w.generate(gen_request("complete", greedy(8), prompt=prompt))
        assert code["text"] != base["text"] and again["text"] == base["text"]
        stop = threading.Event()
        stop.set()
        with w._cancel.scope(stop):  # the stopping criterion ends transformers' generate after one token
            cut = w.backend.complete(prompt, greedy(50))
        assert cut.usage.completion_tokens == 1
    finally:
        w.close()
