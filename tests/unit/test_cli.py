"""The `cogumi` CLI and the jobs/ entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cogumi.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_config_prints_resolved_yaml_with_overrides():
    res = runner.invoke(app, ["config", "--config", str(REPO / "configs/local.yaml"), "--set", "train.lora.r=32"])
    assert res.exit_code == 0, res.output
    data = yaml.safe_load(res.stdout.split("# config hash")[0])
    assert data["train"]["lora"]["r"] == 32 and data["student"]["model"] == "embedded:smollm2"


def test_config_section_only():
    res = runner.invoke(app, ["config", "train"])
    assert res.exit_code == 0 and list(yaml.safe_load(res.stdout)) == ["train"]


def test_bad_config_exits_2_with_one_paragraph(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lora:\n    rank: 8\n")
    res = runner.invoke(app, ["config", "--config", str(bad)])
    assert res.exit_code == 2
    assert "unknown key 'train.lora.rank'" in res.output and "Traceback" not in res.output


def test_models_lists_registry_with_fit_column():
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["smollm2-135m-instruct"]["fits_inference"] != "no"
    assert rows["gpt-4o"]["fits_inference"] == "api"
    assert "qlora_batch" in rows["llama-3.1-8b-instruct"]


def test_doctor_reports_this_machine():
    res = runner.invoke(app, ["doctor", "--json", "--config", str(REPO / "configs/local.yaml")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["ok"] and report["embedded_model"]["ok"]
    assert report["local"]["cpus"] >= 1
    assert {p["package"] for p in report["packages"]} >= {"torch", "ray", "llama-cpp-python"}
    assert report["fits"][0]["model"] == "smollm2-135m-instruct"


def test_generate_llamacpp_json():
    res = runner.invoke(app, ["generate", "What is the capital of France? Answer briefly.", "--backend", "llamacpp",
                              "--max-tokens", "12", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert "Paris" in out["text"] and out["usage"]["completion_tokens"] > 0 and out["tokens_per_s"] > 0


def test_generate_with_unreachable_endpoint_is_a_clean_error():
    from tests.support.openai_server import free_port

    res = runner.invoke(app, ["generate", "hi", "--backend", "openai", "--model", "x",
                              "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--set", "student.max_retries=0"])
    assert res.exit_code == 2 and "cannot reach" in res.output and "Traceback" not in res.output


def test_generate_cuda_on_cpu_machine_is_a_clean_error():
    import torch

    if torch.cuda.is_available():
        return
    res = runner.invoke(app, ["generate", "hi", "--set", "student.device=cuda"])
    assert res.exit_code == 2 and "CUDA was requested" in res.output


def test_every_job_is_a_cli_command():
    commands = {c.name for c in app.registered_commands}
    jobs = {p.stem for p in (REPO / "jobs").glob("*.py") if not p.stem.startswith("_")}
    assert jobs, "jobs/ has entry points"
    assert jobs <= commands, f"jobs without a CLI command: {jobs - commands}"


def test_console_script_and_job_file_run_the_same_command():
    cli = subprocess.run([sys.executable, "-m", "cogumi", "config", "run"], capture_output=True, text=True,
                         timeout=120)
    job = subprocess.run([sys.executable, str(REPO / "jobs/doctor.py"), "--help"], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0 and "name: local" in cli.stdout
    assert job.returncode == 0 and "hardware" in job.stdout.lower()


def test_an_unexpected_error_exits_1_with_a_hint_and_debug_shows_the_traceback(tmp_path):
    corrupt = tmp_path / "rows.parquet"
    corrupt.write_bytes(b"not a parquet file at all")
    args = ["dedup", str(corrupt), "--out", str(tmp_path / "out.jsonl")]
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "unexpected error: ArrowInvalid" in res.output and "--debug" in res.output
    assert "invalid request" not in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["--debug", *args])
    assert res.exit_code == 1 and "Traceback (most recent call last)" in res.output
    assert "pyarrow" in res.output and "unexpected error: ArrowInvalid" in res.output


def test_a_validation_error_exits_2_naming_the_field():
    res = runner.invoke(app, ["generate", "hi", "--backend", "nonsense"])
    assert res.exit_code == 2, res.output
    assert "'backend'" in res.output and "nonsense" in res.output and "Traceback" not in res.output
