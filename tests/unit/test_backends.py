"""The one inference interface over its three backends, with real models and real HTTP."""

from __future__ import annotations

import json
import math

import pytest

from cogumi.config import ModelConfig
from cogumi.errors import BackendError, ModelLoadError
from cogumi.models.inference import InferenceBackend, SamplingParams, make_backend
from cogumi.models.inference.openai_backend import OpenAIBackend
from cogumi.models.inference.transformers_backend import TransformersBackend
from cogumi.models.loading import load_causal_lm, load_tokenizer
from tests.support.openai_server import free_port

HELLO = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def tiny_backend(tiny_llama_dir):
    model = load_causal_lm(str(tiny_llama_dir), device="cpu")
    return TransformersBackend(model, load_tokenizer(str(tiny_llama_dir)), "tiny")


def test_llamacpp_chat_answers_with_usage(embedded_llamacpp):
    gen = embedded_llamacpp.chat([{"role": "user", "content": "What is the capital of France? Answer briefly."}],
                                 SamplingParams(max_tokens=16))
    assert isinstance(embedded_llamacpp, InferenceBackend)
    assert "Paris" in gen.text
    assert gen.usage.prompt_tokens > 10 and 0 < gen.usage.completion_tokens <= 16
    assert gen.backend == "llamacpp" and gen.tokens_per_s > 0


def test_llamacpp_logprobs_are_valid_distributions(embedded_llamacpp):
    gen = embedded_llamacpp.chat(HELLO, SamplingParams(max_tokens=6, logprobs=True, top_logprobs=3))
    assert gen.logprobs and len(gen.logprobs) == gen.usage.completion_tokens
    for tok in gen.logprobs:
        assert tok.logprob <= 0 and len(tok.top) == 3
        assert math.isclose(max(tok.top.values()), tok.logprob, abs_tol=1e-4)  # greedy picks the argmax
        assert sum(math.exp(v) for v in tok.top.values()) <= 1.0 + 1e-4


def test_llamacpp_json_schema_output_parses(embedded_llamacpp):
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    gen = embedded_llamacpp.chat([{"role": "user", "content": "Rate this answer from 1 to 10: 'Paris'."}],
                                 SamplingParams(max_tokens=24, response_format={"type": "json_schema",
                                                                                "json_schema": {"schema": schema}}))
    assert isinstance(json.loads(gen.text)["score"], int)


def test_llamacpp_stop_and_stream(embedded_llamacpp):
    full = embedded_llamacpp.chat(HELLO, SamplingParams(max_tokens=20)).text
    streamed = "".join(embedded_llamacpp.stream_chat(HELLO, SamplingParams(max_tokens=20)))
    assert streamed == full
    word = full.split()[2]
    stopped = embedded_llamacpp.chat(HELLO, SamplingParams(max_tokens=20, stop=[word])).text
    assert word not in stopped and full.startswith(stopped)


def test_transformers_logprobs_match_a_forward_pass(tiny_backend):
    import torch

    gen = tiny_backend.complete("Hello world", SamplingParams(max_tokens=5, logprobs=True))
    ids = tiny_backend.tokenizer("Hello world", return_tensors="pt").input_ids
    new = tiny_backend.tokenizer(gen.text, add_special_tokens=False, return_tensors="pt").input_ids
    full = torch.cat([ids, new[:, : len(gen.logprobs)]], dim=1)
    with torch.no_grad():
        logp = torch.log_softmax(tiny_backend.model(full).logits[0].float(), -1)
    for i, tok in enumerate(gen.logprobs[: new.shape[1]]):
        pos = ids.shape[1] - 1 + i
        assert math.isclose(tok.logprob, float(logp[pos, full[0, pos + 1]]), abs_tol=1e-3)


def test_transformers_length_finish_and_stream(tiny_backend):
    params = SamplingParams(max_tokens=7)
    gen = tiny_backend.chat(HELLO, params)
    assert gen.usage.completion_tokens == 7 and gen.finish_reason == "length"
    assert "".join(tiny_backend.stream_chat(HELLO, params)) == gen.text


def test_transformers_sampling_is_seeded(tiny_backend):
    p = SamplingParams(max_tokens=8, temperature=1.0, seed=123)
    assert tiny_backend.chat(HELLO, p).text == tiny_backend.chat(HELLO, p).text


def test_openai_backend_over_real_http(fresh_openai_server):
    backend = OpenAIBackend(fresh_openai_server.base_url, "local-teacher")
    gen = backend.chat(HELLO, SamplingParams(max_tokens=8, logprobs=True, top_logprobs=2))
    assert gen.text and gen.usage.completion_tokens > 0 and gen.backend == "openai"
    assert gen.logprobs and all(len(t.top) == 2 for t in gen.logprobs)
    sent = fresh_openai_server.requests[-1]
    assert sent["max_tokens"] == 8 and sent["messages"] == HELLO and sent["logprobs"] is True
    text = backend.complete("The capital of France is", SamplingParams(max_tokens=4))
    assert text.usage.completion_tokens > 0
    backend.close()


def test_openai_backend_retries_429_and_500(fresh_openai_server):
    fresh_openai_server.faults.extend(["429", "500"])
    backend = OpenAIBackend(fresh_openai_server.base_url, "local-teacher", max_retries=2)
    gen = backend.chat(HELLO, SamplingParams(max_tokens=4))
    assert gen.text and len(fresh_openai_server.requests) == 3


def test_openai_backend_gives_up_with_a_clear_error(fresh_openai_server):
    fresh_openai_server.faults.extend(["500", "500"])
    backend = OpenAIBackend(fresh_openai_server.base_url, "local-teacher", max_retries=1)
    with pytest.raises(BackendError, match="HTTP 500"):
        backend.chat(HELLO, SamplingParams(max_tokens=4))


def test_refused_connection_is_a_clear_error():
    backend = make_backend(ModelConfig(backend="openai", model="x", base_url=f"http://127.0.0.1:{free_port()}/v1",
                                       max_retries=0, timeout_s=5))
    with pytest.raises(BackendError, match=r"cannot reach.*Where: http://127.0.0.1.*Fix: check that the server"):
        backend.chat(HELLO)


def test_not_a_gguf_is_refused(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        make_backend(ModelConfig(backend="llamacpp", model=str(fake)))
    with pytest.raises(ModelLoadError, match="does not exist"):
        make_backend(ModelConfig(backend="llamacpp", model=str(tmp_path / "missing.gguf")))


def test_missing_local_model_dir_and_offline_hub(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        make_backend(ModelConfig(backend="transformers", model=str(tmp_path / "nope")))
    with pytest.raises(ModelLoadError, match="Hugging Face Hub"):
        make_backend(ModelConfig(backend="transformers", model="cogumi-test/definitely-not-a-model"))


def test_bad_messages_are_rejected(embedded_llamacpp):
    with pytest.raises(ValueError, match="role"):
        embedded_llamacpp.chat([{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="at least one"):
        embedded_llamacpp.chat([])


def test_llamacpp_logprobs_without_alternatives(embedded_llamacpp):
    gen = embedded_llamacpp.chat(HELLO, SamplingParams(max_tokens=4, logprobs=True, top_logprobs=0))
    assert gen.logprobs and len(gen.logprobs) == gen.usage.completion_tokens
    assert all(t.top == {} and t.logprob <= 0 for t in gen.logprobs)


def test_inference_package_imports_first_in_a_fresh_process():
    """Serve replicas import the inference package before anything else."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", "import cogumi.models.inference as m; print(m.make_backend)"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
