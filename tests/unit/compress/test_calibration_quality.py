"""Calibration sets, held-out perplexity (transformers and llama.cpp), the quality gate, the size report."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cogumi.compress import quality
from cogumi.compress.calibration import calibration_dataset, calibration_texts, held_out_texts
from cogumi.compress.config import CalibrationConfig, QualityConfig
from cogumi.compress.errors import CompressError, QualityGateError
from cogumi.compress.report import bar_chart, size_rows, to_markdown
from cogumi.compress.texts import CALIBRATION, HELD_OUT
from cogumi.errors import CogumiError


def test_built_in_held_out_is_disjoint_from_calibration():
    assert len(CALIBRATION) >= 20 and len(HELD_OUT) >= 10
    assert not set(CALIBRATION) & set(HELD_OUT)
    assert all("\n    " not in t or t.lstrip().startswith(("def ", "class ", "import")) for t in CALIBRATION)


def test_built_in_calibration(tiny_hf):
    texts, source = calibration_texts(CalibrationConfig(num_samples=10), tiny_hf[1], "prune")
    assert source == "built-in" and len(texts) == 10 and set(texts) <= set(CALIBRATION)
    ds = calibration_dataset(texts, tiny_hf[1], max_seq_length=32)
    assert len(ds) == 10 and max(len(x) for x in ds["input_ids"]) <= 32


def _curated(path, n):
    rows = {"id": [str(i) for i in range(n)], "instruction": [f"Question {i}?" for i in range(n)],
            "response": [f"Answer number {i}." for i in range(n)], "domain": ["math"] * n}
    pq.write_table(pa.table(rows), path)
    return path


def test_curated_samples_are_rendered_with_the_chat_template(tiny_hf, tmp_path):
    data = _curated(tmp_path / "curated.parquet", 12)
    texts, source = calibration_texts(CalibrationConfig(data=str(data), num_samples=12), tiny_hf[1], "quantize")
    assert source == str(data) and len(texts) == 12
    assert all("<|im_start|>user" in t and "<|im_start|>assistant" in t for t in texts)


def test_too_small_calibration_set_names_file_and_step(tiny_hf, tmp_path):
    data = _curated(tmp_path / "tiny.parquet", 3)
    with pytest.raises(CompressError, match="only 3 calibration sample") as err:
        calibration_texts(CalibrationConfig(data=str(data), min_samples=8), tiny_hf[1], "prune")
    assert "compress prune" in str(err.value) and "tiny.parquet" in str(err.value)


def test_calibration_file_without_the_needed_columns(tiny_hf, tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": ["a"] * 10}), bad)
    with pytest.raises(CogumiError, match="lacks column") as err:
        calibration_texts(CalibrationConfig(data=str(bad)), tiny_hf[1], "prune")
    assert "bad.parquet" in str(err.value) and "compress prune" in str(err.value)
    with pytest.raises(CompressError, match="does not exist"):
        calibration_texts(CalibrationConfig(data=str(tmp_path / "nope.jsonl")), tiny_hf[1], "prune")


def test_held_out_from_file(tmp_path):
    txt = tmp_path / "held.txt"
    txt.write_text("First paragraph here.\n\nSecond one.\n")
    texts, source = held_out_texts(QualityConfig(eval_data=str(txt)))
    assert texts == ["First paragraph here.", "Second one."] and source == str(txt)
    assert held_out_texts(QualityConfig())[1] == "built-in"


def test_windows_and_perplexity_agree_between_transformers_and_llama_cpp(tiny_hf, tiny_f16_gguf):
    model, tok = tiny_hf
    windows = quality.token_windows(list(HELD_OUT), tok, max_tokens=300, window=128)
    assert [len(w) for w in windows] == [128, 128, 44]
    hf = quality.hf_perplexity(model, windows)
    cpp = quality.llamacpp_perplexity(tiny_f16_gguf, windows)
    assert math.isfinite(hf) and abs(cpp / hf - 1) < 1e-3  # same token ids, f16 weights


def test_gate_pass_warn_fail():
    rejected = quality.gate("pruned/", 11.2, 10.0, QualityConfig(max_ppl_increase=0.10))  # default: fallback
    assert rejected.status == "rejected" and not rejected.usable and "+12.0%" in rejected.reason()
    quality.enforce([rejected], "prune", "x")  # a rejection never raises: later steps fall back
    cfg = QualityConfig(max_ppl_increase=0.10, on_fail="fail")
    assert quality.gate("m", 10.9, 10.0, cfg).status == "pass"
    assert quality.gate("m", 11.2, 10.0, QualityConfig(on_fail="warn")).status == "warn"
    failed = quality.gate("w4a16/", 11.2, 10.0, cfg)
    assert failed.status == "fail" and failed.increase == pytest.approx(0.12)
    quality.enforce([quality.gate("m", 10.5, 10.0, cfg)], "prune", "x")
    with pytest.raises(QualityGateError, match=r"after step 'quantize'.*w4a16/.*\+12\.0%") as err:
        quality.enforce([failed], "quantize", "runs/x/compress.quantize/w4a16")
    assert "compress.quantize/w4a16" in str(err.value)
    assert quality.gate("m", float("nan"), 10.0, cfg).status == "fail"


def test_size_report(tmp_path):
    stages = {
        "baseline": {"bytes": 1000, "params": 250, "ppl": 10.0,
                     "artifacts": [{"artifact": "in", "bytes": 1000, "ppl": 10.0, "gate": "baseline"}]},
        "gguf": {"artifacts": [{"artifact": "model-q5_k_m.gguf", "bytes": 180, "ppl": 10.4, "gate": "pass",
                                "method": "llama.cpp Q5_K_M"}]},
        "zstd": {"artifacts": [{"artifact": "model-q5_k_m.gguf.zstd (+dict)", "bytes": 170, "ppl": 10.4,
                                "gate": "pass"}]},
    }
    rows = size_rows(stages)
    assert [r["step"] for r in rows] == ["baseline", "gguf", "zstd"]
    assert rows[1]["vs_input"] == 0.18 and rows[1]["bits_per_param"] == 5.76
    assert rows[1]["ppl_change"] == pytest.approx(0.04)
    md = to_markdown(rows, "T", ["note"])
    assert "| gguf | `model-q5_k_m.gguf` | 0.0 MB | 0.180x | 5.76 | 10.400 | +4.00 % | pass |" in md
    png = bar_chart(rows, tmp_path / "c.png", "T")
    assert png.read_bytes()[:4] == b"\x89PNG"
    json.dumps(rows)
