"""Keys, rate limits, the serve config section and deployment options (no Ray, no models)."""

from __future__ import annotations

import pytest

from cogumi.config import load_config
from cogumi.errors import ConfigError, ModelLoadError
from cogumi.serve.auth import RateLimiter, check_bearer, digest, load_key_digests
from cogumi.serve.config import ServeConfig
from cogumi.serve.worker import resolve_adapters

KEY_A, KEY_B = "alpha-key-123456", "bravo-key-654321"


def test_env_keys_turn_auth_on_even_for_open_local():
    assert load_key_digests("open-local", None, {}) is None
    digests = load_key_digests("open-local", None, {"COGUMI_API_KEY": f"{KEY_A}, {KEY_B},"})
    assert digests == sorted([digest(KEY_A), digest(KEY_B)])
    assert KEY_A not in "".join(digests)


def test_keys_file_with_comments(tmp_path):
    f = tmp_path / "keys.txt"
    f.write_text(f"# team keys\n{KEY_A}\n\n  {KEY_B}  \n")
    assert load_key_digests("keys", str(f), {}) == sorted([digest(KEY_A), digest(KEY_B)])


def test_keys_mode_without_keys_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="no API key"):
        load_key_digests("keys", None, {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_key_digests("keys", str(tmp_path / "missing.txt"), {})
    with pytest.raises(ConfigError, match="shorter than 8"):
        load_key_digests("keys", None, {"COGUMI_API_KEY": "abc"})


def test_bearer_check():
    digests = [digest(KEY_A), digest(KEY_B)]
    assert check_bearer(f"Bearer {KEY_B}", digests) == digest(KEY_B)
    assert check_bearer(f"bearer  {KEY_A}", digests) == digest(KEY_A)
    for bad in (None, "", KEY_A, f"Basic {KEY_A}", "Bearer ", f"Bearer {KEY_A}x"):
        assert check_bearer(bad, digests) is None


def test_rate_limiter_bursts_then_refills_per_caller():
    lim = RateLimiter(per_minute=60, burst=2)
    assert lim.acquire("a", now=0.0) == 0.0 and lim.acquire("a", now=0.0) == 0.0
    wait = lim.acquire("a", now=0.0)
    assert wait == pytest.approx(1.0)
    assert lim.acquire("b", now=0.0) == 0.0  # buckets are per caller
    assert lim.acquire("a", now=1.01) == 0.0


def test_serve_section_validation():
    with pytest.raises(Exception, match="modifier name"):
        ServeConfig.model_validate({"modifiers": {"../x": "a.gguf"}})
    with pytest.raises(Exception, match="min_replicas"):
        ServeConfig.model_validate({"base_deployment": {"min_replicas": 3, "max_replicas": 1}})
    cfg = load_config("configs/local.yaml", ["serve.port=8123", "serve.routing.mode=pre"])
    assert cfg.serve.port == 8123 and cfg.serve.routing.mode == "pre" and cfg.serve.auth == "open-local"


def test_deployment_options_fixed_and_autoscaled():
    pytest.importorskip("ray")
    from cogumi.serve.config import DeploymentSettings
    from cogumi.serve.deployments import deployment_options

    fixed = deployment_options(DeploymentSettings(num_cpus=0.25, min_replicas=2, max_replicas=2))
    assert fixed["num_replicas"] == 2 and fixed["ray_actor_options"]["num_cpus"] == 0.25
    auto = deployment_options(DeploymentSettings(min_replicas=1, max_replicas=4, target_ongoing_requests=3))
    assert auto["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 3}
    assert "num_replicas" not in auto


def test_resolve_adapters_from_folder_and_explicit(tmp_path):
    for domain, name in (("code", "adapter.gguf"), ("math", "m.gguf")):
        (tmp_path / domain).mkdir()
        (tmp_path / domain / name).write_bytes(b"GGUF")
    (tmp_path / "Bad Name").mkdir()  # not a domain name: ignored
    explicit = tmp_path / "reasoning.gguf"
    explicit.write_bytes(b"GGUF")
    found = resolve_adapters(str(tmp_path), {"reasoning": str(explicit)}, "llamacpp")
    assert found == {"code": str(tmp_path / "code" / "adapter.gguf"), "math": str(tmp_path / "math" / "m.gguf"),
                     "reasoning": str(explicit)}
    with pytest.raises(ModelLoadError, match="no PEFT adapter"):
        resolve_adapters(str(tmp_path), {}, "transformers")
    (tmp_path / "code" / "second.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match="2 .gguf files"):
        resolve_adapters(str(tmp_path), {}, "llamacpp")
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_adapters(str(tmp_path / "none"), {}, "llamacpp")
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_adapters(None, {"code": str(tmp_path / "gone.gguf")}, "llamacpp")


def test_peft_adapter_folder_is_found(tmp_path):
    (tmp_path / "code" / "adapter").mkdir(parents=True)
    (tmp_path / "code" / "adapter" / "adapter_config.json").write_text("{}")
    assert resolve_adapters(str(tmp_path), {}, "transformers") == {"code": str(tmp_path / "code" / "adapter")}
