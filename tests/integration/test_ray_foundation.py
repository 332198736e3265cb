"""The foundation on a real local Ray cluster."""

from __future__ import annotations

import pytest

from cogumi.config import ModelConfig, SamplingConfig
from cogumi.generate import GenerateRequest, run_generate_on_ray
from cogumi.models.resources import detect_ray_nodes

pytestmark = pytest.mark.integration


def test_ray_nodes_are_detected(ray_local):
    nodes = detect_ray_nodes()
    assert len(nodes) == 1 and nodes[0].cpus == 2 and nodes[0].ram_total_gb > 0


def test_generation_runs_inside_a_ray_task(ray_local):
    req = GenerateRequest(ModelConfig(backend="llamacpp"), SamplingConfig(max_tokens=12),
                          "What is the capital of France? Answer briefly.")
    out = run_generate_on_ray(req)
    assert "Paris" in out["text"] and out["backend"] == "llamacpp"


def test_backends_load_in_parallel_ray_actors(ray_local):
    """Two workers each hold a llama.cpp backend (as curation and serving replicas do)."""
    import ray

    @ray.remote(num_cpus=1)
    class Worker:
        def __init__(self):
            from cogumi.models.inference import make_backend

            self.backend = make_backend(ModelConfig(backend="llamacpp", n_threads=1))

        def ask(self, q):
            from cogumi.models.inference import SamplingParams

            return self.backend.chat([{"role": "user", "content": q}], SamplingParams(max_tokens=8)).text

    workers = [Worker.remote() for _ in range(2)]
    answers = ray.get([w.ask.remote("Say hello.") for w in workers])
    assert len(answers) == 2 and all(a.strip() for a in answers)
    assert answers[0] == answers[1]  # greedy, same model, same prompt
    for w in workers:
        ray.kill(w)
