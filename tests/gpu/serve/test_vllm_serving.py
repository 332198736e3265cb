"""The vLLM serving path (issue 14): continuous batching with modifiers as LoRA adapters (needs CUDA and vllm)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from cogumi.models.inference import SamplingParams
from cogumi.serve.worker import gen_request

pytestmark = pytest.mark.gpu

ASK = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def code_peft(embedded_hf_dir, tmp_path_factory):
    """A random rank-8 PEFT LoRA for the embedded SmolLM2 (B not zero, so it changes the output)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(embedded_hf_dir)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    out = tmp_path_factory.mktemp("peft") / "code"
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def vllm_worker(embedded_hf_dir, code_peft):
    pytest.importorskip("vllm")
    from cogumi.config_base import ModelConfig
    from cogumi.serve.config import VllmSettings
    from cogumi.serve.worker import ModelWorker

    w = ModelWorker(ModelConfig(backend="transformers", model=str(embedded_hf_dir), n_ctx=512),
                    {"code": str(code_peft)}, vllm=VllmSettings(enabled=True, max_loras=2, max_lora_rank=8,
                                                                gpu_memory_utilization=0.3))
    yield w
    w.close()


def test_vllm_adapters_are_selected_per_request_in_one_batch(vllm_worker):
    greedy = SamplingParams(max_tokens=16, temperature=0.0)
    base = vllm_worker.generate(gen_request("chat", greedy, ASK))["text"]
    code = vllm_worker.generate(gen_request("chat", greedy, ASK, adapter="code"))["text"]
    assert base and code and base != code
    reqs = [gen_request("chat", greedy, ASK, adapter="code" if i % 2 else None) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(vllm_worker.generate, reqs))
    for r, a in zip(reqs, got):
        assert a["text"] == (code if r["adapter"] else base)


def test_vllm_logprobs_and_stream(vllm_worker):
    req = gen_request("chat", SamplingParams(max_tokens=8, temperature=0.0, logprobs=True, top_logprobs=2), ASK)
    answer = vllm_worker.generate(req)
    assert answer["logprobs"] and all(lp["logprob"] <= 0 for lp in answer["logprobs"])
    events = list(vllm_worker.stream(gen_request("chat", SamplingParams(max_tokens=8, temperature=0.0), ASK)))
    assert events[-1]["done"] and events[-1]["text"] == "".join(e["text"] for e in events[:-1])
