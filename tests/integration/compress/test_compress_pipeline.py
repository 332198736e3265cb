"""`cogumi compress` on a local Ray cluster: every step a Ray task with a manifest, gate, report, resume."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cogumi.artifacts import RunDir
from cogumi.cli import app
from cogumi.compress.archive import file_sha256
from cogumi.compress.texts import CALIBRATION
from tests.unit.compress.tiny_models import save_tiny, train_briefly

pytestmark = pytest.mark.integration

FAST = ["compress.quantize.group_size=32", "compress.quantize.awq_grid=8", "compress.gguf.types=[Q5_K_M]",
        "compress.zstd.dict_size=16384", "compress.zstd.max_samples=300", "compress.zstd.sample_size=1024",
        "compress.quality.max_tokens=384", "compress.quality.window=128", "compress.calibration.num_samples=12",
        "compress.calibration.max_seq_length=96", "compress.gguf.check_tokens=4", "compress.num_cpus=1"]


@pytest.fixture(scope="module")
def trained_tiny(tiny_llama_dir, tmp_path_factory):
    """A tiny Llama fitted a little to English, so compression measurably changes its perplexity."""
    out = save_tiny("llama", tmp_path_factory.mktemp("trained") / "tiny", tiny_llama_dir, seed=7)
    return train_briefly(out, list(CALIBRATION), steps=30)


@pytest.fixture(scope="module")
def adapter(trained_tiny, tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(trained_tiny, dtype=torch.float32)
    torch.manual_seed(2)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapters") / "math"
    model.save_pretrained(out)
    return out


def _compress(tmp_path, model, *extra):
    args = ["compress", "--model", str(model), "--set", f"run.root={tmp_path}", "--set", "run.name=c"]
    for item in [*FAST, *extra]:
        args += ["--set", item]
    return CliRunner().invoke(app, args)


def _manifests(tmp_path):
    run = RunDir.open(str(tmp_path), "c")
    return {s: run.stage(s).manifest() for s in run.stages() if s.startswith("compress.")}


def test_full_pipeline_on_ray(ray_local, trained_tiny, adapter, tmp_path):
    result = _compress(tmp_path, trained_tiny, "compress.quality.on_fail=warn", f"compress.gguf.adapters=[{adapter}]")
    assert result.exit_code == 0, result.output
    manifests = _manifests(tmp_path)
    assert set(manifests) == {f"compress.{s}" for s in ("baseline", "prune", "quantize", "gguf", "zstd", "report")}
    assert all(m.status == "finished" for m in manifests.values())
    assert "awq" in manifests["compress.quantize"].method["quantization"]
    assert manifests["compress.prune"].metrics["nm_blocks_kept"] == 1.0
    assert manifests["compress.quantize"].metrics["sparsity_after_quantization"]["nm_blocks_kept"] == 1.0
    assert "no speed-up" in manifests["compress.prune"].metrics["note"]

    gguf = manifests["compress.gguf"].metrics
    assert all(rt["passed"] and rt["tokenizer_match"] for rt in gguf["round_trip"].values())
    assert gguf["round_trip"]["model-f16.gguf"]["mean_kl"] < 1e-3
    assert gguf["adapters"]["math"]["passed"] and gguf["adapters"]["math"]["mean_kl"] < 1e-3

    zstd = manifests["compress.zstd"].metrics
    assert zstd["verify"]["verified"] and zstd["record"]["level"] == 10

    report = tmp_path / "c" / "compress.report"
    table = json.loads((report / "size_table.json").read_text())
    rows = {r["artifact"]: r for r in table["rows"]}
    assert set(rows) >= {"pruned/", "w4a16/", "model-f16.gguf", "model-q5_k_m.gguf", "model-q5_k_m.gguf.zstd (+dict)"}
    for row in table["rows"][1:]:  # every step's gate matches its numbers
        assert row["gate"] == ("pass" if row["ppl_change"] <= 0.10 else "warn"), row
    assert rows["model-q5_k_m.gguf"]["bytes"] < rows["model-f16.gguf"]["bytes"] < rows["pruned/"]["bytes"]
    assert "| prune | `pruned/` |" in (report / "size_table.md").read_text()
    assert (report / "size_chart.png").read_bytes()[:4] == b"\x89PNG"
    assert "size_table.md" in result.output or "Compression of c" in result.output

    # the archive restores bit-identical through the CLI
    record = tmp_path / "c" / "compress.zstd" / "model-q5_k_m.gguf.zstd.json"
    restored = tmp_path / "restored.gguf"
    out = CliRunner().invoke(app, ["compress", "--restore", str(record), "--output", str(restored)])
    assert out.exit_code == 0, out.output
    assert file_sha256(restored) == file_sha256(tmp_path / "c" / "compress.gguf" / "model-q5_k_m.gguf")

    # unchanged config: every step is skipped; a new zstd level reruns only zstd and the report
    again = _compress(tmp_path, trained_tiny, "compress.quality.on_fail=warn", f"compress.gguf.adapters=[{adapter}]")
    assert again.exit_code == 0 and "unchanged steps reused" in again.output
    before = {s: m.ended_at for s, m in _manifests(tmp_path).items()}
    assert before == {s: m.ended_at for s, m in manifests.items()}
    changed = _compress(tmp_path, trained_tiny, "compress.quality.on_fail=warn", f"compress.gguf.adapters=[{adapter}]",
                        "compress.zstd.level=3")
    assert changed.exit_code == 0, changed.output
    after = _manifests(tmp_path)
    rerun = {s for s in after if after[s].started_at != manifests[s].started_at or after[s].ended_at != before[s]}
    assert rerun == {"compress.zstd", "compress.report"}
    assert after["compress.zstd"].metrics["record"]["level"] == 3


def test_quality_gate_stops_the_run_and_keeps_finished_steps(ray_local, trained_tiny, tmp_path):
    result = _compress(tmp_path, trained_tiny, "compress.prune.mask=unstructured",
                       "compress.prune.attention_sparsity=0.9", "compress.prune.mlp_sparsity=0.9",
                       "compress.quality.max_ppl_increase=0.0", "compress.quality.on_fail=fail",
                       "compress.quantize.enabled=false", "compress.gguf.enabled=false")
    assert result.exit_code == 2
    assert "quality gate failed after step 'prune'" in result.output and "compress.prune" in result.output
    manifests = _manifests(tmp_path)
    assert manifests["compress.baseline"].status == "finished"
    assert manifests["compress.prune"].status == "failed" and "QualityGateError" in manifests["compress.prune"].error
    assert "compress.report" not in manifests  # nothing after the failed step, nothing taken as finished


def test_missing_model_is_a_user_error(ray_local, tmp_path):
    result = _compress(tmp_path, tmp_path / "no-such-model")
    assert result.exit_code == 2 and "does not exist" in result.output and "no-such-model" in result.output


def test_a_pruning_step_that_breaks_the_model_is_rejected_and_the_gguf_comes_from_the_input(
        ray_local, trained_tiny, tmp_path):
    """Planted failure: 90 % unstructured pruning. The default gate (fallback) rejects it, records why, builds
    the GGUFs from the unpruned input, and promotes the smallest GGUF that passes."""
    result = _compress(tmp_path, trained_tiny, "compress.prune.mask=unstructured",
                       "compress.prune.attention_sparsity=0.9", "compress.prune.mlp_sparsity=0.9",
                       "compress.quality.max_ppl_increase=0.002",  # the tiny model is barely trained: +0.4 % here
                       "compress.quantize.enabled=false", "compress.gguf.types=[Q4_K_M,Q5_K_M]")
    assert result.exit_code == 0, result.output
    m = _manifests(tmp_path)
    prune = m["compress.prune"].metrics
    assert m["compress.prune"].status == "finished" and prune["promoted"] is False
    assert "perplexity" in prune["rejected"] and prune["artifacts"][0]["gate"] == "rejected"
    gguf = m["compress.gguf"]
    assert gguf.method["source"] == "input model"
    rows = {a["artifact"]: a for a in gguf.metrics["artifacts"]}
    served = gguf.metrics["served"]
    assert rows[served]["gate"] == "pass" and rows[served]["ppl"] <= 1.002 * m["compress.baseline"].metrics["ppl"]
    # nothing smaller than the served file passed its gate
    assert all(r["gate"] != "pass" for r in rows.values() if r["bytes"] < rows[served]["bytes"])
    # the archive is of the promoted file, and the report says what was rejected
    assert (tmp_path / "c" / "compress.zstd" / f"{served}.zstd.json").is_file()
    table = (tmp_path / "c" / "compress.report" / "size_table.md").read_text()
    assert "rejected" in table and "served" in table
