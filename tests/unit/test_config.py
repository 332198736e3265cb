"""Config loading, overrides and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from cogumi.config import CogumiConfig, load_config
from cogumi.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
KUBERAY = sorted((CONFIG_DIR / "kuberay").glob("*.yaml"))
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p not in KUBERAY)


def test_configs_folder_is_not_empty():
    assert any(p.name == "local.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, CogumiConfig)
    assert cfg.run.name


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_manifests_are_well_formed(path):
    import yaml

    doc = yaml.safe_load(path.read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in ("RayJob", "RayService")
    cluster = doc["spec"].get("rayClusterSpec") or doc["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"] and cluster["workerGroupSpecs"]
    if doc["kind"] == "RayJob":
        assert doc["spec"]["entrypoint"].startswith("python jobs/")


def test_local_config_is_the_embedded_default():
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "local.yaml")
    assert cfg.student.model == cfg.judge.model == "embedded:smollm2"
    assert all(t.model.model == "embedded:smollm2" for t in cfg.curate.teachers)
    assert cfg.serve.auth == "open-local"


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["train.lora.r=32", "train.qlora=false", "run.name=x1", "train.lora.target_modules=[q_proj]"])
    assert cfg.train.lora.r == 32 and cfg.train.qlora is False
    assert cfg.run.name == "x1" and cfg.train.lora.target_modules == ["q_proj"]


def test_defaults_match_the_spec():
    cfg = CogumiConfig()
    assert (cfg.train.lora.r, cfg.train.lora.alpha, cfg.train.lora.dropout) == (64, 16, 0.05)
    assert len(cfg.train.lora.target_modules) == 7
    assert cfg.curate.min_judge_score == 7.0


def test_unknown_key_names_key_line_and_allowed_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lora:\n    r: 8\n    rank: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    msg = str(exc.value)
    assert "train.lora.rank" in msg and "line 4" in msg and str(bad) in msg and "alpha" in msg


def test_wrong_type_says_what_was_expected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: fast\n")
    with pytest.raises(ConfigError, match=r"train.learning_rate.*line 2.*valid number.*'fast'"):
        load_config(bad)


def test_unknown_key_in_override_is_reported():
    with pytest.raises(ConfigError, match=r"unknown key 'train.lora.rr'.*overrides"):
        load_config(None, ["train.lora.rr=3"])


@pytest.mark.parametrize("override", ["train.lora.r", "=3", "train.lora.r.x=1"])
def test_malformed_override(override):
    with pytest.raises(ConfigError):
        load_config(None, [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(scalar)


def test_openai_backend_requires_base_url():
    with pytest.raises(ConfigError, match="base_url"):
        load_config(None, ["student.backend=openai"])


def test_section_hash_is_stable_and_sensitive():
    a, b = load_config(None, []), load_config(None, [])
    c = load_config(None, ["train.lora.r=8"])
    assert a.section_hash("train") == b.section_hash("train")
    assert a.section_hash("train") != c.section_hash("train")
    assert a.section_hash("curate") == c.section_hash("curate")


def test_kuberay_manifests_point_at_real_code():
    import importlib

    import yaml

    root = CONFIG_DIR.parent
    job = yaml.safe_load((CONFIG_DIR / "kuberay" / "rayjob.yaml").read_text())
    script, _, rest = job["spec"]["entrypoint"].removeprefix("python ").partition(" --config ")
    assert (root / script).is_file() and (root / rest.split()[0]).is_file()
    svc = yaml.safe_load((CONFIG_DIR / "kuberay" / "rayservice.yaml").read_text())
    app = yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"][0]
    module, _, attr = app["import_path"].partition(":")
    assert hasattr(importlib.import_module(module), attr)
    assert (root / app["args"]["config"]).is_file()


def test_final_eval_refuses_a_single_item_suite():
    """One item gives no interval: the config says so instead of a run that reports `None` bounds."""
    with pytest.raises(ConfigError, match="at least 2 items"):
        load_config("configs/local.yaml", ["pipeline.final_eval.code_items=1"])
    cfg = load_config("configs/local.yaml", ["pipeline.final_eval.code_items=0"])
    assert cfg.pipeline.final_eval.code_items == 0
