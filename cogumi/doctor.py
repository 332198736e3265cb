"""``cogumi doctor``: hardware, packages, the embedded model, and what fits here."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any

from rich.console import Console
from rich.table import Table

from cogumi.config import CogumiConfig, ModelConfig
from cogumi.errors import CogumiError
from cogumi.raycluster import connect

#: (import name, distribution, required, what needs it)
PACKAGES = (
    ("torch", "torch", True, "every model"),
    ("transformers", "transformers", True, "HF models"),
    ("ray", "ray", True, "every phase"),
    ("llama_cpp", "llama-cpp-python", True, "GGUF inference"),
    ("openai", "openai", True, "teachers, judge"),
    ("peft", "peft", True, "LoRA"),
    ("trl", "trl", True, "SFT"),
    ("bitsandbytes", "bitsandbytes", True, "QLoRA NF4"),
    ("llmcompressor", "llmcompressor", True, "pruning, AWQ/GPTQ"),
    ("gguf", "gguf", True, "GGUF export"),
    ("datasketch", "datasketch", True, "MinHash dedup"),
    ("zstandard", "zstandard", True, "zstd archive"),
    ("deepspeed", "deepspeed", False, "multi-GPU ZeRO-2 (extra: gpu)"),
    ("vllm", "vllm", False, "GPU serving (optional)"),
)


def run_checks(cfg: CogumiConfig, ray_address: str | None = None) -> dict[str, Any]:
    """Collect everything doctor reports; ``ok`` is False when a required piece is missing."""
    from cogumi.models.registry import get_model
    from cogumi.models.resources import detect_local, detect_ray_nodes, estimate_for, plan

    local = detect_local()
    packages = []
    for mod, dist, required, purpose in PACKAGES:
        found = importlib.util.find_spec(mod) is not None
        version = _version(dist) if found else None
        packages.append({"package": dist, "version": version, "required": required, "purpose": purpose,
                         "ok": found or not required})
    embedded = _embedded_status()
    nodes = []
    if ray_address:

        try:
            connect(ray_address, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError/RuntimeError variants
            raise CogumiError(f"cannot connect to the Ray cluster ({exc})", ray_address,
                              "start it with `ray start --head` or `ray up cluster.yaml`, or drop --ray-address") from None
        nodes = [n.as_dict() for n in detect_ray_nodes()]
    fits = []
    for label, mcfg in (("student", cfg.student), ("judge", cfg.judge)):
        spec_name = _registry_name(mcfg)
        if spec_name is None:
            continue
        spec = get_model(spec_name)
        fit = plan(spec, local, context=mcfg.n_ctx, r=cfg.train.lora.r, seq_len=cfg.train.max_seq_length)
        est = estimate_for(spec, local, cfg.train, context=mcfg.n_ctx)
        fits.append({"role": label, "model": spec_name, "device": fit.device, "budget_gb": fit.available_gb,
                     "inference": fit.inference_weights or "does not fit", "fp16_gb": est.fp16_gb,
                     "nf4_gb": est.nf4_gb, "qlora_gb": est.qlora_gb, "settings": est.settings,
                     "qlora_max_batch": fit.train_batch_size or "does not fit"})
    ok = all(p["ok"] for p in packages) and embedded["ok"]
    return {"ok": ok, "local": local.as_dict(), "ray_nodes": nodes, "packages": packages,
            "embedded_model": embedded, "fits": fits}


def render(report: dict[str, Any], console: Console) -> None:
    """Print the doctor report as tables."""
    loc = report["local"]
    hw = Table(title="Hardware")
    for col in ("node", "CPUs", "RAM total GB", "RAM free GB", "best device", "accelerators"):
        hw.add_column(col)
    rows = [loc] + report["ray_nodes"]
    for n in rows:
        accs = ", ".join(f"{a['kind']}:{a['index']} {a['name']} {a['total_gb']:.0f}GB" for a in n["accelerators"])
        hw.add_row(str(n["node"]), f"{n['cpus']:g}", f"{n['ram_total_gb']:.1f}", f"{n['ram_free_gb']:.1f}",
                   n["best_device"], accs or "none")
    console.print(hw)
    pk = Table(title="Packages")
    for col in ("package", "version", "needed for", "status"):
        pk.add_column(col)
    for p in report["packages"]:
        status = "ok" if p["version"] else ("MISSING" if p["required"] else "optional, not installed")
        pk.add_row(p["package"], p["version"] or "-", p["purpose"], status)
    console.print(pk)
    emb = report["embedded_model"]
    console.print(f"Embedded model: {'ok' if emb['ok'] else 'MISSING'} — {emb['detail']}", highlight=False)
    if report["fits"]:
        ft = Table(title="Will it fit here? (memory: estimates)")
        for col in ("role", "model", "device", "budget GB", "serve as", "fp16 GB", "NF4 GB", "QLoRA GB",
                    "largest QLoRA batch"):
            ft.add_column(col)
        for f in report["fits"]:
            ft.add_row(f["role"], f["model"], f["device"], str(f["budget_gb"]), str(f["inference"]),
                       str(f["fp16_gb"]), str(f["nf4_gb"]), str(f["qlora_gb"]), str(f["qlora_max_batch"]))
        console.print(ft)
        console.print(memory_note(report["fits"][0]["settings"]), highlight=False)
    console.print("[green]all required checks passed[/]" if report["ok"] else "[red]some required checks failed[/]")


def memory_note(settings: str) -> str:
    """The line under every memory table: the figures are estimates, for these settings."""
    return (f"Memory figures are estimates for {settings} (formulas in cogumi/models/resources.py); "
            "a training run records its measured peak as peak_memory_gb in its manifest.")


def _embedded_status() -> dict[str, Any]:
    from cogumi.models.embedded import embedded_gguf_path

    try:
        path = embedded_gguf_path()
    except CogumiError as exc:
        return {"ok": False, "detail": str(exc)}
    return {"ok": True, "detail": f"{path} ({path.stat().st_size / 1e6:.1f} MB)"}


def _registry_name(mcfg: ModelConfig) -> str | None:
    """Registry name of a configured local model, or None (API model or uncatalogued path)."""
    from cogumi.models.registry import get_model

    try:
        spec = get_model(mcfg.model)
    except CogumiError:
        return None
    return spec.name if spec.is_local else None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "present"
