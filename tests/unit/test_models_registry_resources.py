"""Model registry lookups and memory planning."""

from __future__ import annotations

import pytest

from cogumi.errors import CogumiError, DeviceError
from cogumi.models.registry import MODELS, get_model, list_models
from cogumi.models.resources import (
    Accelerator,
    NodeResources,
    detect_local,
    inference_gb,
    plan,
    qlora_train_gb,
    resolve_device,
)


def test_lookup_by_name_alias_and_hub_id():
    assert get_model("embedded:smollm2").name == "smollm2-135m-instruct"
    assert get_model("meta-llama/Llama-3.1-8B-Instruct").name == "llama-3.1-8b-instruct"
    assert get_model("QWEN2.5-7B-INSTRUCT").architecture == "qwen2"
    with pytest.raises(CogumiError, match="cogumi models"):
        get_model("gpt-17")


def test_catalogue_covers_students_and_teachers():
    students = {m.name for m in list_models("student")}
    assert {"smollm2-135m-instruct", "llama-3.1-8b-instruct", "mistral-7b-instruct-v0.3"} <= students
    assert all(m.price_out_per_mtok >= 0 for m in list_models("teacher"))
    assert len({m.name for m in MODELS}) == len(MODELS)


def test_lora_parameter_count_by_hand():
    llama = get_model("llama-3.1-8b-instruct")
    # per layer, r * (in + out) summed over q(4096,4096) k,v(4096,1024) o(4096,4096) gate,up(4096,14336) down(14336,4096)
    per_layer = 64 * (8192 + 5120 + 5120 + 8192 + 18432 * 3)
    assert llama.lora_params(64) == 32 * per_layer
    assert llama.lora_params(64, ("q_proj",)) == 32 * 64 * 8192


def test_smollm2_parameter_shape_matches_real_checkpoint(embedded_hf_dir):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(embedded_hf_dir)
    spec = get_model("smollm2")
    assert (spec.hidden, spec.layers, spec.intermediate, spec.heads, spec.kv_heads, spec.vocab) == (
        cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.num_attention_heads,
        cfg.num_key_value_heads, cfg.vocab_size)


def test_estimates_grow_with_precision_context_and_batch():
    spec = get_model("llama-3.1-8b-instruct")
    assert inference_gb(spec, "nf4") < inference_gb(spec, "int8") < inference_gb(spec, "bfloat16")
    assert inference_gb(spec, "bfloat16", context=32768) > inference_gb(spec, "bfloat16", context=4096)
    assert qlora_train_gb(spec, batch=1) < qlora_train_gb(spec, batch=4) < qlora_train_gb(spec, batch=8)
    # the spec's budget: an 8B QLoRA at batch 4, seq 2048 fits an A100 40GB
    assert 12 < qlora_train_gb(spec, batch=4) < 40


def _gpu_node(gb: float) -> NodeResources:
    return NodeResources("n", 8, 64, 60, [Accelerator("cuda", 0, "gpu", gb, gb)])


def test_plan_picks_precision_and_batch_by_memory():
    spec = get_model("llama-3.1-8b-instruct")
    big, mid, small = plan(spec, _gpu_node(80)), plan(spec, _gpu_node(12)), plan(spec, _gpu_node(4))
    assert big.inference_weights == "bfloat16" and big.train_batch_size >= 4
    assert mid.inference_weights in ("int8", "nf4") and mid.fits_inference
    assert not small.fits_inference and not small.fits_training


def test_detect_local_sees_this_machine():
    node = detect_local()
    assert node.cpus >= 1 and node.ram_total_gb > 1 and node.ram_free_gb <= node.ram_total_gb
    assert node.best_device in ("cpu", "cuda", "mps")


def test_asking_for_cuda_without_it_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        assert resolve_device("cuda") == "cuda"
        return
    with pytest.raises(DeviceError, match="CUDA was requested.*Fix: set device: auto or cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") in ("cpu", "mps")


def test_doctor_and_models_print_the_same_estimates_for_the_same_config():
    import json

    from typer.testing import CliRunner

    from cogumi.cli import app

    args = ["--config", "configs/local.yaml", "--set", "train.batch_size=2", "--json"]
    models = CliRunner().invoke(app, ["models", "--role", "student", *args])
    doctor = CliRunner().invoke(app, ["doctor", *args])
    assert models.exit_code == 0 and doctor.exit_code == 0, models.output + doctor.output
    row = next(r for r in json.loads(models.stdout) if r["name"] == "smollm2-135m-instruct")
    fit = next(f for f in json.loads(doctor.stdout)["fits"] if f["role"] == "student")
    assert (row["fp16_gb"], row["nf4_gb"], row["qlora_gb"]) == (fit["fp16_gb"], fit["nf4_gb"], fit["qlora_gb"])
    assert "QLoRA batch 2, seq 512, LoRA r 16" in fit["settings"]
    text = CliRunner().invoke(app, ["models", "--role", "student", "--config", "configs/local.yaml"]).output
    assert "estimates" in " ".join(text.split())


def test_cpu_qlora_estimate_of_smollm2_is_near_its_measured_peak():
    from cogumi.models.resources import estimate

    est = estimate(get_model("smollm2"), "cpu", r=16, seq_len=512, batch=1, context=2048)  # configs/local.yaml
    measured_peak_gb = 2.3  # peak RSS of the train stage's worker on 2 CPU cores
    assert 0.75 * measured_peak_gb < est.qlora_gb < 1.25 * measured_peak_gb
    assert est.nf4_gb < est.fp16_gb
