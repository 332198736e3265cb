"""On a CUDA machine: AWQ through llmcompressor on the GPU, and the W4A16 result served by the GPU backend."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


def test_awq_on_gpu_and_served_by_the_transformers_cuda_backend(embedded_hf_dir, tmp_path):
    import torch
    from transformers import AutoTokenizer

    from cogumi.compress.calibration import calibration_dataset, calibration_texts
    from cogumi.compress.checkpoint import clean_view, load_for_eval
    from cogumi.compress.config import CalibrationConfig, QuantizeConfig
    from cogumi.compress.quality import hf_perplexity, token_windows
    from cogumi.compress.quantize import choose_method, quantize_model
    from cogumi.compress.texts import HELD_OUT
    from cogumi.config import ModelConfig
    from cogumi.models.inference import SamplingParams, make_backend

    cfg = QuantizeConfig(method="awq", group_size=64, device="cuda")
    method, note = choose_method(cfg)
    assert method == "awq" and "accelerator" in note and "pinning skipped" not in note

    tok = AutoTokenizer.from_pretrained(embedded_hf_dir)
    calib = CalibrationConfig(num_samples=24, max_seq_length=256)
    texts, _ = calibration_texts(calib, tok, "quantize")
    out = tmp_path / "w4a16"
    with tempfile.TemporaryDirectory() as scratch:
        info = quantize_model(clean_view(Path(embedded_hf_dir), Path(scratch)), out, cfg,
                              calibration_dataset(texts, tok, calib.max_seq_length), calib)
    assert info["method"] == "awq"
    qcfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qcfg["quant_method"] == "compressed-tensors" and qcfg["config_groups"]["group_0"]["weights"]["num_bits"] == 4

    windows = token_windows(list(HELD_OUT), tok, 1024, 256)
    base = hf_perplexity(load_for_eval(Path(embedded_hf_dir), "cuda"), windows)
    quant = hf_perplexity(load_for_eval(out, "cuda"), windows)
    assert quant / base - 1 < 0.5, (base, quant)  # 4-bit g64 AWQ on a 135M model: a loss, not a collapse

    backend = make_backend(ModelConfig(backend="transformers", model=str(out), device="cuda"))
    try:
        gen = backend.chat([{"role": "user", "content": "What is the capital of France?"}],
                           SamplingParams(max_tokens=16))
    finally:
        backend.close()
    assert gen.text.strip() and gen.usage.completion_tokens > 0
    assert torch.cuda.is_available()
