"""The ``compress`` config section: defaults, validation, per-step hashes, CLI wiring."""

from __future__ import annotations

import pytest

from cogumi.config import load_config
from cogumi.errors import ConfigError


def test_defaults_follow_the_spec():
    c = load_config().compress
    assert c.prune.mask == "2:4" and c.prune.nm == (2, 4)
    assert c.quantize.method == "awq" and c.quantize.group_size == 128
    assert c.gguf.types == ["Q5_K_M", "Q4_K_M"] and c.gguf.outtype == "f16"
    assert c.zstd.level == 10 and c.zstd.dict_size == 128 * 1024 and c.zstd.target == "SERVED"
    assert c.quality.max_ppl_increase == 0.10 and c.quality.on_fail == "fallback"


def test_2_4_mask_fixes_sparsity_and_unstructured_allows_the_spec_split():
    with pytest.raises(ConfigError, match="prunes exactly 50%"):
        load_config(None, ["compress.prune.mlp_sparsity=0.7"])
    c = load_config(None, ["compress.prune.mask=unstructured", "compress.prune.attention_sparsity=0.6",
                           "compress.prune.mlp_sparsity=0.7"]).compress
    assert c.prune.nm is None and (c.prune.attention_sparsity, c.prune.mlp_sparsity) == (0.6, 0.7)
    with pytest.raises(ConfigError, match="N:M"):
        load_config(None, ["compress.prune.mask='4:2'"])
    # unquoted YAML 1.1 reads 2:4 as the base-60 integer 124; it still means the 2:4 mask
    assert load_config(None, ["compress.prune.mask=2:4"]).compress.prune.mask == "2:4"


@pytest.mark.parametrize("override,match", [
    ("compress.gguf.types=[Q9_X]", "unknown GGUF type"),
    ("compress.zstd.target=Q8_0", "not produced"),
    ("compress.zstd.level=30", "less than or equal to 22"),
    ("compress.quality.on_fail=ignore", "fail"),
])
def test_bad_values_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_step_hashes_only_cover_what_a_step_reads():
    from cogumi.compress.pipeline import step_hash

    base = load_config()
    zstd = load_config(None, ["compress.zstd.level=12"])
    assert step_hash(base, "prune") == step_hash(zstd, "prune")
    assert step_hash(base, "gguf") == step_hash(zstd, "gguf")
    assert step_hash(base, "zstd") != step_hash(zstd, "zstd")
    gate = load_config(None, ["compress.quality.max_ppl_increase=0.2"])
    assert step_hash(base, "prune") != step_hash(gate, "prune")


def test_enabled_steps():
    from cogumi.compress.pipeline import enabled_steps

    assert enabled_steps(load_config()) == ["baseline", "prune", "quantize", "gguf", "zstd", "report"]
    cfg = load_config(None, ["compress.prune.enabled=false", "compress.zstd.enabled=false"])
    assert enabled_steps(cfg) == ["baseline", "quantize", "gguf", "report"]


def test_compress_command_is_registered():
    from typer.testing import CliRunner

    from cogumi.cli import app

    result = CliRunner().invoke(app, ["compress", "--help"])
    assert result.exit_code == 0 and "--restore" in result.output and "--force" in result.output


def test_restore_of_a_missing_archive_is_a_user_error(tmp_path):
    from typer.testing import CliRunner

    from cogumi.cli import app

    result = CliRunner().invoke(app, ["compress", "--restore", str(tmp_path / "nope.gguf.zstd.json")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_stage_references_resolve_inside_the_run(tmp_path):
    from cogumi.artifacts import RunDir
    from cogumi.compress.pipeline import resolve_refs
    from cogumi.errors import ArtifactError

    cfg = load_config(None, ["run.name=r1", "compress.model=stage:train/merged",
                             "compress.calibration.data=stage:curate/curated.parquet",
                             "compress.gguf.adapters=[stage:modifiers/adapters/code, /abs/adapter]"])
    run = RunDir.open(str(tmp_path), "r1")
    c = resolve_refs(cfg, run).compress
    assert c.model == str(tmp_path / "r1" / "train" / "merged")
    assert c.calibration.data == str(tmp_path / "r1" / "curate" / "curated.parquet")
    assert c.gguf.adapters == [str(tmp_path / "r1" / "modifiers" / "adapters" / "code"), "/abs/adapter"]
    with pytest.raises(ArtifactError, match="bad stage reference"):
        resolve_refs(load_config(None, ["compress.model=stage:../x"]), run)
