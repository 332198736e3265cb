"""The acceptance run on real language: embedded SmolLM2 -> prune -> AWQ -> GGUF f16 -> Q5_K_M -> zstd -> back."""

from __future__ import annotations

import json

import pytest

from cogumi.compress.archive import file_sha256, unpack
from cogumi.compress.pipeline import run_compress
from cogumi.config import load_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_smollm2_full_chain_round_trips(ray_local, embedded_hf_dir, tmp_path):
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=smol", f"compress.model={embedded_hf_dir}",
                             "compress.quantize.group_size=64", "compress.quantize.awq_grid=10",
                             "compress.gguf.types=[Q5_K_M]",
                             "compress.calibration.num_samples=8", "compress.calibration.max_seq_length=128",
                             "compress.quality.max_tokens=512",
                             "compress.quality.on_fail=warn",
                             # 2:4 pruning leaves this 135M model near-uniform (perplexity ~300), where
                             # Q5_K_M's rounding flips many arg-maxes (top-1 0.64 here, lower on other CPUs).
                             # What the round trip must catch is a broken file: KL of several nats.
                             "compress.gguf.check_prompts=4", "compress.gguf.quant_max_kl=1.0",
                             "compress.gguf.quant_min_top1=0.4"])
    result = run_compress(cfg)
    steps = result["steps"]
    assert steps["prune"]["nm_blocks_kept"] == 1.0
    gguf = steps["gguf"]
    assert gguf["round_trip"]["model-f16.gguf"]["passed"] and gguf["round_trip"]["model-q5_k_m.gguf"]["passed"]
    assert gguf["round_trip"]["model-f16.gguf"]["mean_kl"] < 1e-3
    assert gguf["round_trip"]["model-q5_k_m.gguf"]["top1_agreement"] > 0.4
    assert all(rt["tokenizer_match"] for rt in gguf["round_trip"].values())

    run = tmp_path / "smol"
    restored = tmp_path / "restored.gguf"
    unpack(run / "compress.zstd" / "model-q5_k_m.gguf.zstd.json", restored)
    assert file_sha256(restored) == file_sha256(run / "compress.gguf" / "model-q5_k_m.gguf")

    from cogumi.config import ModelConfig
    from cogumi.models.inference import SamplingParams, make_backend

    backend = make_backend(ModelConfig(backend="llamacpp", model=str(restored)))
    try:
        reply = backend.chat([{"role": "user", "content": "What is the capital of France?"}],
                             SamplingParams(max_tokens=12))
    finally:
        backend.close()
    assert reply.text.strip() and reply.usage.completion_tokens > 0

    rows = json.loads((run / "compress.report" / "size_table.json").read_text())["rows"]
    for row in rows[1:]:
        assert row["gate"] == ("pass" if row["ppl_change"] <= 0.10 else "warn"), row
    by_name = {r["artifact"]: r for r in rows}
    assert by_name["model-q5_k_m.gguf"]["bytes"] < 0.5 * by_name["model-f16.gguf"]["bytes"]


def test_the_students_own_gguf_is_served_when_every_requantisation_is_bigger(ray_local, tmp_path):
    """The embedded student is already a 4-bit GGUF: re-quantising it must not win by default."""
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=asis", "student.model=embedded:smollm2",
                             "compress.prune.enabled=false", "compress.quantize.enabled=false",
                             "compress.zstd.enabled=false", "compress.gguf.types=[Q5_K_M]",
                             "compress.quality.max_tokens=512"])
    gguf = run_compress(cfg)["steps"]["gguf"]
    rows = {a["artifact"]: a for a in gguf["artifacts"]}
    assert gguf["served"] == "model-input.gguf", gguf
    assert rows["model-input.gguf"]["gate"] == "pass" and "input GGUF as is" in rows["model-input.gguf"]["method"]
    assert rows["model-input.gguf"]["bytes"] < rows["model-q5_k_m.gguf"]["bytes"]
    assert (tmp_path / "asis" / "compress.gguf" / "model-input.gguf").is_file()
    assert gguf["round_trip"]["model-input.gguf"]["passed"]
