"""The compression steps as plain functions over a run directory (no Ray here).

Each step reads the previous steps' outputs from their stage folders, writes its own
outputs through a :class:`~cogumi.artifacts.StageRecorder`, measures size and
held-out perplexity of everything it wrote, records the method that really ran,
and applies the quality gate. :mod:`cogumi.compress.pipeline` wires them into Ray
tasks with manifests.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cogumi.artifacts import RunDir, StageRecorder
from cogumi.compress import quality
from cogumi.compress.calibration import calibration_dataset, calibration_texts, held_out_texts
from cogumi.compress.checkpoint import clean_view, count_parameters, load_for_eval, weights_bytes
from cogumi.compress.config import CompressConfig
from cogumi.compress.errors import CompressError, GgufFileError

log = logging.getLogger(__name__)

STEPS = ("baseline", "prune", "quantize", "gguf", "zstd", "report")
PRUNE_NOTE = ("2:4 zeros are stored dense by llmcompressor (same bytes as the input) and no serving stack used "
              "here has 2:4 kernels: no speed-up or size gain is claimed for pruning by itself")


def stage_name(step: str) -> str:
    """Run-directory stage of a step (one manifest per step)."""
    return f"compress.{step}"


GGUF_STAGE = stage_name("gguf")  # holds the GGUFs; its manifest's metrics["served"] names the promoted one


INPUT_GGUF = "model-input.gguf"  # the input GGUF, copied into the gguf stage when it is a candidate


def gguf_name(qtype: str) -> str:
    """File name of the GGUF of type ``qtype`` (``f16``, ``Q5_K_M``...) in the gguf stage: ``model-q5_k_m.gguf``."""
    return f"model-{qtype.lower()}.gguf"


@dataclass
class StepEnv:
    """What every step needs: settings, the run, the input model and the baseline perplexity."""

    cfg: CompressConfig
    run: RunDir
    model_dir: Path
    baseline_ppl: float | None = None
    input_gguf: Path | None = None  # the GGUF ``model_dir`` was materialised from, when the input is one
    _cache: dict[str, Any] = field(default_factory=dict)

    def stage_path(self, step: str, rel: str = "") -> Path:
        """Local path of a file in a step's stage folder."""
        return Path(self.run.stage(stage_name(step)).file(rel)) if rel else Path(self.run.stage(stage_name(step)).path)

    def tokenizer(self) -> Any:
        """The input model's tokenizer (shared by every step)."""
        if "tok" not in self._cache:
            from transformers import AutoTokenizer

            self._cache["tok"] = AutoTokenizer.from_pretrained(self.model_dir)
        return self._cache["tok"]

    def windows(self) -> list[list[int]]:
        """Held-out token windows for perplexity."""
        if "windows" not in self._cache:
            texts, source = held_out_texts(self.cfg.quality)
            q = self.cfg.quality
            self._cache["windows"] = quality.token_windows(texts, self.tokenizer(), q.max_tokens, q.window)
            self._cache["eval_source"] = source
        return self._cache["windows"]

    def calibration(self, step: str) -> tuple[Any, str]:
        """Tokenised calibration set and its source."""
        texts, source = calibration_texts(self.cfg.calibration, self.tokenizer(), step)
        return calibration_dataset(texts, self.tokenizer(), self.cfg.calibration.max_seq_length), source

    def promoted(self, step: str) -> bool:
        """Did ``step`` run and pass its gate (so later steps build on its output)?"""
        if step == "prune" and not self.cfg.prune.enabled or step == "quantize" and not self.cfg.quantize.enabled:
            return False
        manifest = self.run.stage(stage_name(step)).manifest()
        return bool(manifest and manifest.metrics.get("promoted", True))

    def float_source(self) -> Path:
        """The latest float model: the pruned one if pruning ran and passed its gate, else the input."""
        return self.stage_path("prune", "pruned") if self.promoted("prune") else self.model_dir


def _artifact(env: StepEnv, rec: StageRecorder, name: str, path: Path, ppl: float | None,
              method: str) -> tuple[dict[str, Any], quality.GateResult | None]:
    row: dict[str, Any] = {"artifact": name, "bytes": weights_bytes(path), "method": method}
    result = None
    if ppl is not None:
        row["ppl"] = round(ppl, 4)
        if env.baseline_ppl:
            result = quality.gate(name, ppl, env.baseline_ppl, env.cfg.quality)
            row["gate"] = result.status
            if result.status == "rejected":
                row["rejected"] = result.reason()
    rec.metrics.setdefault("artifacts", []).append(row)
    return row, result


def _promote(rec: StageRecorder, step: str, result: quality.GateResult | None, artifact: str) -> None:
    """Record whether the step's output is promoted; raise when the gate says fail."""
    quality.enforce([result] if result else [], step, artifact)
    promoted = result is None or result.usable
    rec.metrics["promoted"] = promoted
    if result is not None and not promoted:
        rec.metrics["rejected"] = f"{result.model}: {result.reason()}; later steps use the step's input instead"
        rec.method["gate"] = "rejected (quality.on_fail: fallback)"


def _hf_ppl(env: StepEnv, model_dir: Path) -> float:
    model = load_for_eval(model_dir)
    try:
        return quality.hf_perplexity(model, env.windows())
    finally:
        del model


def baseline(env: StepEnv, rec: StageRecorder) -> None:
    """Size, parameters and held-out perplexity of the uncompressed input."""
    ppl = _hf_ppl(env, env.model_dir)
    rec.metrics.update(ppl=round(ppl, 4), bytes=weights_bytes(env.model_dir), params=count_parameters(env.model_dir),
                       eval_tokens=sum(len(w) for w in env.windows()), eval_source=env._cache["eval_source"])
    _artifact(env, rec, f"{env.model_dir.name} (input)", env.model_dir, ppl, "input")
    rec.metrics["artifacts"][0]["gate"] = "baseline"
    rec.method["eval"] = f"transformers fp32 perplexity, {len(env.windows())} windows of <= {env.cfg.quality.window}"
    rec.write_json("baseline.json", rec.metrics)


def prune(env: StepEnv, rec: StageRecorder) -> None:
    """SparseGPT pruning of the input (dense output)."""
    from cogumi.compress.prune import prune_model

    cfg = env.cfg.prune
    dataset, source = env.calibration("prune")
    out = Path(rec.path("pruned/config.json")).parent
    with tempfile.TemporaryDirectory(prefix="cogumi-prune-") as scratch:
        src = clean_view(env.model_dir, Path(scratch))
        stats = prune_model(src, out, cfg, dataset, env.cfg.calibration)
    rec.method.update(pruning=f"sparsegpt (llmcompressor), mask {cfg.mask}", storage="dense safetensors",
                      calibration=f"{len(dataset)} samples from {source}")
    rec.metrics.update(stats, calibration_samples=len(dataset), note=PRUNE_NOTE)
    log.info("prune: %s; %s", stats, PRUNE_NOTE)
    ppl = _hf_ppl(env, out)
    _, result = _artifact(env, rec, "pruned/", out, ppl, f"sparsegpt {cfg.mask} (dense)")
    _promote(rec, "prune", result, str(out))


def quantize(env: StepEnv, rec: StageRecorder) -> None:
    """AWQ or GPTQ W4A16 of the float model, saved as compressed-tensors."""
    from cogumi.compress.prune import sparsity_stats
    from cogumi.compress.quantize import quantize_model

    dataset, source = env.calibration("quantize")
    src = env.float_source()
    out = Path(rec.path("w4a16/config.json")).parent
    with tempfile.TemporaryDirectory(prefix="cogumi-quant-") as scratch:
        info = quantize_model(clean_view(src, Path(scratch)), out, env.cfg.quantize, dataset, env.cfg.calibration)
    rec.method.update(quantization=info["method_note"], format="compressed-tensors pack-quantized int4 (W4A16)",
                      calibration=f"{len(dataset)} samples from {source}")
    model = load_for_eval(out)
    if env.cfg.prune.enabled:
        kept = sparsity_stats(model, env.cfg.prune.nm)
        rec.metrics["sparsity_after_quantization"] = kept
    ppl = quality.hf_perplexity(model, env.windows())
    del model
    rec.metrics.update(method=info["method"], group_size=info["group_size"], symmetric=info["symmetric"])
    _, result = _artifact(env, rec, "w4a16/", out, ppl, info["method_note"].split(" (")[0] + " W4A16")
    _promote(rec, "quantize", result, str(out))


def gguf(env: StepEnv, rec: StageRecorder) -> None:
    """GGUF f16 export, K-quants and LoRA adapters, each checked against the HF model in llama.cpp.

    Promotes one file, recorded as ``metrics["served"]``: the smallest GGUF that passes the quality
    gate among ``gguf.types``; with ``quality.on_fail: fallback`` and none passing, the first of
    ``gguf.fallback_types`` that passes, else the f16 export; when every GGUF of a pruned model
    fails, the unpruned input is exported and tried the same way. Rejected files stay on disk
    with their reasons in the manifest.
    """
    from cogumi.compress.checkpoint import dequantize_checkpoint
    from cogumi.compress.errors import QualityGateError

    cfg = env.cfg.gguf
    fallback = env.cfg.quality.on_fail == "fallback"
    with tempfile.TemporaryDirectory(prefix="cogumi-gguf-") as scratch:
        if cfg.source == "quantized" and env.promoted("quantize"):
            sources = [(dequantize_checkpoint(env.stage_path("quantize", "w4a16"), Path(scratch) / "dequantized"),
                        "dequantised W4A16 (compressed-tensors) model")]
        else:
            sources = [(env.float_source(), "pruned float model" if env.promoted("prune") else "input model")]
            if cfg.source == "quantized":
                rec.metrics["source_note"] = "the W4A16 model was rejected by its gate: GGUFs built from floats"
        if fallback and sources[0][0] != env.model_dir:
            sources.append((env.model_dir, "input model (every GGUF of the first source was rejected)"))
        for src, label in sources:
            rec.method["source"] = label
            as_is = env.input_gguf if cfg.consider_input and src == env.model_dir else None
            hf_model, served = _gguf_candidates(env, rec, src, fallback, as_is)
            if served:
                break
            log.warning("gguf: no GGUF of the %s passed the quality gate", label)
        if served is None:
            raise QualityGateError("no GGUF passed the quality gate (see the artifacts in the gguf manifest)",
                                   str(env.stage_path("gguf")), "relax compress.quality.max_ppl_increase or "
                                   "add a gentler type to compress.gguf.fallback_types")
        tok, prompts = env.tokenizer(), _check_prompts(env)
        adapters = _export_adapters(env, rec, src, hf_model, tok, prompts, gguf_name(cfg.outtype))
        del hf_model
    rec.metrics["served"] = served
    rec.method["served"] = f"{served} (smallest GGUF that passed the gate)"
    if served == INPUT_GGUF:
        rec.method["served"] += (f": the input GGUF as is ({env.input_gguf.name if env.input_gguf else '?'}), "
                                 "smaller than every re-quantisation that passed")
    if adapters:
        rec.metrics["adapters"] = adapters
    rec.write_json("round_trip.json", {"models": rec.metrics["round_trip"], "adapters": adapters})
    bad = [n for n, a in adapters.items() if not a["passed"]]
    if bad:
        raise GgufFileError(f"llama.cpp output of the LoRA adapter(s) {', '.join(bad)} does not match PEFT within "
                            f"tolerance (see round_trip.json)", str(env.stage_path("gguf")),
                            "check the adapter's architecture support, or loosen compress.gguf tolerances")


def _gguf_candidates(env: StepEnv, rec: StageRecorder, src: Path, fallback: bool,
                     as_is: Path | None = None) -> tuple[Any, str | None]:
    """Export ``src``, quantise, check and gate each type; returns (the HF model, the promoted file or None).

    ``as_is``: the GGUF ``src`` came from, a candidate too (copied in as :data:`INPUT_GGUF`).
    """
    from cogumi.compress.gguf_check import compare_with_hf, quantize_gguf, verify_gguf
    from cogumi.compress.gguf_export import export_gguf

    cfg = env.cfg.gguf
    f16_name = gguf_name(cfg.outtype)
    exported = export_gguf(src, rec.path(f16_name), outtype=cfg.outtype, tokenizer_pre=cfg.tokenizer_pre,
                           name=env.model_dir.name)
    rec.method.update(export=f"cogumi gguf exporter ({exported.architecture} -> {exported.gguf_arch}, "
                             f"tokenizer {exported.tokenizer_model}/{exported.tokenizer_pre})",
                      quantizer="llama.cpp llama_model_quantize (llama-cpp-python)")
    types = rec.metrics.setdefault("tensor_types", {})
    types[f16_name] = verify_gguf(rec.path(f16_name), "gguf")
    hf_model, tok, prompts = load_for_eval(src), env.tokenizer(), _check_prompts(env)
    checks = rec.metrics.setdefault("round_trip", {})
    label = rec.method["source"]

    def candidate(name: str, qtype: str) -> tuple[int, bool]:
        f16 = qtype in ("F16", "F32")
        if qtype == "input":
            assert as_is is not None
            with open(as_is, "rb") as fin, rec.fs.open_output_stream(rec.path(name)) as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            types[name] = verify_gguf(rec.path(name), "gguf")
        elif not f16:
            types[name] = quantize_gguf(rec.path(f16_name), rec.path(name), qtype)
        rt = compare_with_hf(rec.path(name), hf_model, tok, prompts, cfg.check_tokens,
                             cfg.f16_max_kl if f16 else cfg.quant_max_kl, cfg.f16_min_top1 if f16 else cfg.quant_min_top1)
        checks[name] = rt.as_dict()
        if not rt.passed and (f16 or not fallback) and qtype != "input":
            raise GgufFileError(f"llama.cpp output of {name} does not match the HF model within tolerance "
                                f"(see the gguf manifest's round_trip)", str(env.stage_path("gguf")),
                                "check the architecture/tokenizer support, or loosen compress.gguf tolerances")
        ppl = quality.llamacpp_perplexity(rec.path(name), env.windows())
        method = f"the input GGUF as is ({as_is.name})" if qtype == "input" and as_is else \
            f"llama.cpp {qtype} from the {label}"
        row, result = _artifact(env, rec, name, Path(rec.path(name)), ppl, method)
        if not rt.passed:
            row.update(gate="rejected", rejected=f"round trip vs HF outside tolerance: {rt.as_dict()}")
            return row["bytes"], False
        quality.enforce([result] if result else [], "gguf", rec.path(name))
        return row["bytes"], result is None or result.usable

    f16_usable = candidate(f16_name, cfg.outtype.upper())[1]
    passing = {}
    for qtype in cfg.types:
        size, ok = candidate(gguf_name(qtype), qtype)
        if ok:
            passing[gguf_name(qtype)] = size
    if as_is is not None:
        size, ok = candidate(INPUT_GGUF, "input")
        if ok:
            passing[INPUT_GGUF] = size
    if not passing and fallback:
        for qtype in (t for t in cfg.fallback_types if t not in cfg.types):
            size, ok = candidate(gguf_name(qtype), qtype)
            if ok:
                passing[gguf_name(qtype)] = size
                break
    if passing:
        return hf_model, min(passing, key=passing.__getitem__)
    return hf_model, f16_name if f16_usable and fallback else None


def _check_prompts(env: StepEnv) -> list[str]:
    from cogumi.compress.texts import HELD_OUT

    return [t[:400] for t in HELD_OUT[: env.cfg.gguf.check_prompts]]


def _export_adapters(env: StepEnv, rec: StageRecorder, src: Path, hf_model: Any, tok: Any, prompts: list[str],
                     base_gguf: str) -> dict[str, Any]:
    """Export each configured PEFT adapter and check llama.cpp+LoRA against transformers+PEFT."""
    from peft import PeftModel

    from cogumi.compress.gguf_check import compare_with_hf
    from cogumi.compress.lora_gguf import export_lora_gguf

    out: dict[str, Any] = {}
    for adapter in env.cfg.gguf.adapters:
        name = Path(adapter).name
        exported = export_lora_gguf(adapter, src, rec.path(f"lora/{name}.gguf"))
        peft_model = PeftModel.from_pretrained(hf_model, adapter).eval()
        try:
            rt = compare_with_hf(rec.path(base_gguf), peft_model, tok, prompts, env.cfg.gguf.check_tokens,
                                 env.cfg.gguf.f16_max_kl, env.cfg.gguf.f16_min_top1,
                                 lora_path=rec.path(f"lora/{name}.gguf"))
        finally:
            peft_model.unload()
        out[name] = {"file": f"lora/{name}.gguf", "rank": exported.rank, "alpha": exported.alpha,
                     "pairs": exported.n_pairs, **rt.as_dict()}
    return out


def served_gguf_name(run: RunDir) -> str:
    """File name of the GGUF the gguf step promoted (in the ``compress.gguf`` stage folder)."""
    manifest = run.stage(stage_name("gguf")).manifest()
    metrics = manifest.metrics if manifest else {}
    if not metrics.get("served"):
        raise CompressError("the gguf step recorded no promoted GGUF", run.stage(stage_name("gguf")).path,
                            "rerun `cogumi compress` (a gguf stage from an older Cogumi has no 'served' entry)")
    return metrics["served"]


def zstd(env: StepEnv, rec: StageRecorder) -> None:
    """zstd archive of the target GGUF, decompressed back and SHA-256 verified."""
    from cogumi.compress.archive import SUFFIX, pack, unpack

    cfg = env.cfg.zstd
    name = served_gguf_name(env.run) if cfg.target == "SERVED" else gguf_name(cfg.target)
    src = env.stage_path("gguf", name)
    if not src.is_file():
        raise CompressError(f"the gguf step has no {name} to archive", str(src), "run the gguf step first")
    record = pack(src, Path(rec.path(name + SUFFIX)).parent, level=cfg.level, dict_size=cfg.dict_size,
                  sample_size=cfg.sample_size, max_samples=cfg.max_samples, threads=cfg.threads,
                  compare_without_dict=cfg.compare_without_dict)
    check = unpack(rec.path(name + SUFFIX + ".json"))
    rec.method.update(archive=f"zstd level {cfg.level}, {record['dict_bytes']}-byte dictionary trained on weight "
                              f"samples, streamed", verify="streaming decompression, SHA-256 compared")
    rec.metrics.update(record=record, verify=check)
    gguf_metrics = env.run.stage(stage_name("gguf")).finished_manifest().metrics
    gguf_rows = {a["artifact"]: a for a in gguf_metrics.get("artifacts", [])}
    ppl = gguf_rows.get(name, {}).get("ppl")
    row = {"artifact": f"{name}{SUFFIX} (+dict)", "bytes": record["compressed_bytes"] + record["dict_bytes"],
           "method": f"zstd -{cfg.level} (lossless, SHA-256 verified)"}
    if ppl is not None:
        row.update(ppl=ppl, gate=gguf_rows[name].get("gate"))
    rec.metrics["artifacts"] = [row]

