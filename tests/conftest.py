"""Shared fixtures: tiny random Llama, the embedded SmolLM2, a local Ray cluster, GPU skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when CUDA is absent."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep Cogumi's cache per test session unless the caller set one (CI reuses ~/.cache)."""
    if "COGUMI_CACHE" not in os.environ:
        os.environ["COGUMI_CACHE"] = str(Path.home() / ".cache" / "cogumi-tests")
    yield


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A random-weight 2-layer Llama (hidden 64) with the SmolLM2 tokenizer, saved as HF."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cogumi.models.embedded import materialise_hf

    tok = AutoTokenizer.from_pretrained(materialise_hf())
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def embedded_gguf() -> Path:
    """The packaged SmolLM2-135M-Instruct GGUF."""
    from cogumi.models.embedded import embedded_gguf_path

    return embedded_gguf_path()


@pytest.fixture(scope="session")
def embedded_hf_dir() -> Path:
    """The embedded model materialised as an HF checkpoint (cached)."""
    from cogumi.models.embedded import materialise_hf

    return materialise_hf()


@pytest.fixture(scope="session")
def ray_local():
    """A session-wide local Ray with 2 CPUs (integration tests)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"COGUMI_CACHE": os.environ["COGUMI_CACHE"]}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def embedded_llamacpp():
    """One llama.cpp backend over the embedded model, with logprobs, shared by the session."""
    from cogumi.config import ModelConfig
    from cogumi.models.inference import make_backend

    backend = make_backend(ModelConfig(backend="llamacpp", logits_all=True, n_ctx=2048))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def openai_server(embedded_llamacpp):
    """A real local OpenAI-compatible server (uvicorn) answering with the embedded model.

    Queue faults with ``openai_server.faults.extend(["429", "500", "garbage", "timeout"])``;
    every request body is kept in ``openai_server.requests``.
    """
    from tests.support.openai_server import LocalOpenAIServer

    server = LocalOpenAIServer(embedded_llamacpp).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_openai_server(openai_server):
    """The shared server with no queued faults and an empty request log."""
    openai_server.faults.clear()
    openai_server.requests.clear()
    return openai_server
