"""SparseGPT 2:4 pruning and AWQ/GPTQ W4A16 through llmcompressor on the tiny Llama (CPU, no Ray)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from cogumi.compress.calibration import calibration_dataset, calibration_texts
from cogumi.compress.checkpoint import clean_view, is_compressed_tensors, load_for_eval, stale_quantization
from cogumi.compress.config import CalibrationConfig, PruneConfig, QuantizeConfig
from cogumi.compress.errors import CompressError
from cogumi.compress.prune import prune_model, sparsity_stats
from cogumi.compress.quantize import choose_method, quantize_model

CALIB = CalibrationConfig(num_samples=8, min_samples=4, max_seq_length=64)


@pytest.fixture(scope="module")
def dataset(tiny_hf):
    texts, _ = calibration_texts(CALIB, tiny_hf[1], "test")
    return calibration_dataset(texts, tiny_hf[1], CALIB.max_seq_length)


@pytest.fixture(scope="module")
def pruned(tiny_llama_dir, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "pruned"
    stats = prune_model(tiny_llama_dir, out, PruneConfig(), dataset, CALIB)
    return out, stats


def test_2_4_pruning_zeroes_two_of_every_four(pruned, tiny_hf, tiny_llama_dir):
    out, stats = pruned
    assert stats["nm_blocks_kept"] == 1.0 and stats["sparsity"] == pytest.approx(0.5, abs=0.01)
    model = load_for_eval(out)
    w = model.model.layers[1].mlp.down_proj.weight.detach()
    assert ((w.reshape(w.shape[0], -1, 4) == 0).sum(-1) >= 2).all()
    base = tiny_hf[0]
    assert torch.equal(model.model.embed_tokens.weight, base.model.embed_tokens.weight)  # embeddings untouched
    assert (out / "model.safetensors").stat().st_size == pytest.approx(
        (tiny_llama_dir / "model.safetensors").stat().st_size, rel=1e-3)  # stored dense: no size gain
    assert not is_compressed_tensors(out)


def test_unstructured_pruning_takes_the_per_group_split(tiny_llama_dir, dataset, tmp_path):
    cfg = PruneConfig(mask="unstructured", attention_sparsity=0.3, mlp_sparsity=0.6)
    stats = prune_model(tiny_llama_dir, tmp_path / "u", cfg, dataset, CALIB)
    assert stats["attention_sparsity"] == pytest.approx(0.3, abs=0.02)
    assert stats["mlp_sparsity"] == pytest.approx(0.6, abs=0.02) and stats["nm_blocks_kept"] is None


@pytest.fixture(scope="module")
def awq(pruned, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("awq") / "w4"
    return out, quantize_model(pruned[0], out, QuantizeConfig(group_size=32, awq_grid=8), dataset, CALIB)


def test_awq_runs_on_cpu_keeps_the_2_4_zeros_and_loads_back(awq):
    out, info = awq
    if info["method_note"].endswith("on the accelerator)"):
        pytest.skip("this machine has an accelerator")
    assert info["method"] == "awq" and "pinning skipped" in info["method_note"] and not info["symmetric"]
    qcfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qcfg["quant_method"] == "compressed-tensors" and qcfg["format"] == "pack-quantized"
    weights = qcfg["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["symmetric"]) == (4, 32, False)
    model = load_for_eval(out)
    assert sparsity_stats(model, (2, 4))["nm_blocks_kept"] == 1.0  # zero is exact on the asymmetric grid
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.isfinite(model(ids).logits).all()


def test_gguf_from_the_dequantised_w4a16_model(awq, tiny_hf, tmp_path):
    """gguf.source=quantized: the dense dequantised W4A16 weights export and run in llama.cpp."""
    from cogumi.compress.checkpoint import dequantize_checkpoint
    from cogumi.compress.gguf_check import compare_with_hf
    from cogumi.compress.gguf_export import export_gguf

    dense = dequantize_checkpoint(awq[0], tmp_path / "dense")
    assert not is_compressed_tensors(dense)
    out = export_gguf(dense, tmp_path / "w4.gguf")
    rt = compare_with_hf(out.path, load_for_eval(awq[0]), tiny_hf[1], ["Hello there, how are you today?"], 4,
                         1e-3, 0.95)
    assert rt.passed and rt.mean_kl < 1e-4


def test_llmcompressor_awq_needs_the_cpu_guard(pruned, dataset, tmp_path, monkeypatch):
    """Without the guard, llmcompressor's AWQ fails on a machine without an accelerator (pin_memory)."""
    import contextlib

    import cogumi.compress.quantize as q

    if q.has_accelerator():
        pytest.skip("an accelerator is present; pinning works")
    monkeypatch.setattr(q, "cpu_awq", contextlib.nullcontext)
    with pytest.raises(RuntimeError, match="accelerator"):
        quantize_model(pruned[0], tmp_path / "w4", QuantizeConfig(group_size=32, awq_grid=8), dataset, CALIB)


def test_cpu_awq_gptq_fallback_is_recorded(pruned, dataset, tmp_path):
    cfg = QuantizeConfig(group_size=32, cpu_awq="gptq")
    method, note = choose_method(cfg)
    if method == "awq":
        pytest.skip("an accelerator is present: AWQ runs there")
    info = quantize_model(pruned[0], tmp_path / "g", cfg, dataset, CALIB)
    assert info["method"] == "gptq" and "awq asked for" in info["method_note"] and info["symmetric"]
    assert is_compressed_tensors(tmp_path / "g")


def test_group_size_must_divide_every_layer(pruned, dataset, tmp_path):
    with pytest.raises(CompressError, match="group size 128 does not divide") as err:
        quantize_model(pruned[0], tmp_path / "x", QuantizeConfig(group_size=128), dataset, CALIB)
    assert "64" in str(err.value) and not (tmp_path / "x").exists()


def test_materialised_gguf_config_is_cleaned_for_llmcompressor(tiny_llama_dir, tmp_path):
    src = tmp_path / "materialised"
    shutil.copytree(tiny_llama_dir, src)
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "gguf", "gguf_file": "x.gguf", "dequantize": False}
    (src / "config.json").write_text(json.dumps(cfg))
    assert stale_quantization(src) == "gguf"
    view = clean_view(src, tmp_path / "scratch")
    assert view != src and stale_quantization(view) is None
    assert (view / "model.safetensors").resolve() == (src / "model.safetensors").resolve()
    assert clean_view(tiny_llama_dir, tmp_path / "scratch") == tiny_llama_dir
