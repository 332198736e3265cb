"""Standard benchmarks through lm-evaluation-harness (``lm-eval`` 0.4).

The bundled ``cogumi_*`` tasks (MMLU-, GSM8K-, HellaSwag-, BBH- and TruthfulQA-shaped,
items written for the project) live in ``cogumi/evaluate/data/tasks`` and read
their JSONL files offline; real users name the standard tasks (``mmlu``,
``gsm8k``, ``hellaswag``, ``bbh``, ``truthfulqa_mc1``), which lm-eval downloads.

Models: a local HF checkpoint (the embedded GGUF is materialised to HF, a PEFT
adapter is merged in) runs through lm-eval's ``HFLM``; an OpenAI-compatible
endpoint runs through ``local-chat-completions``, which can only answer
generate-until tasks (chat endpoints return no prompt logprobs), unless
``endpoint_completions`` sends loglikelihood tasks to ``/v1/completions``.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from cogumi.config_base import ModelConfig
from cogumi.errors import CogumiError
from cogumi.evaluate.config import HarnessConfig

log = logging.getLogger(__name__)
GENERATE = "generate_until"


def bundled_tasks_dir() -> Path:
    """Folder of the bundled task YAMLs and their data."""
    return Path(str(resources.files("cogumi.evaluate") / "data" / "tasks"))


@contextmanager
def _quiet_lm_eval():
    names = ("lm-eval", "lm_eval", "lm_eval.api.task", "lm_eval.evaluator", "lm_eval.tasks", "lm_eval.models")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def task_manager(hcfg: HarnessConfig) -> Any:
    """An lm-eval TaskManager that knows the bundled tasks and ``include_paths``."""
    from lm_eval.tasks import TaskManager

    for p in hcfg.include_paths:
        if not Path(p).is_dir():
            raise CogumiError(f"task folder {p} does not exist", "evaluate.benchmark.harness.include_paths",
                              "point it at a folder of lm-eval task YAMLs")
    return TaskManager(include_path=[str(bundled_tasks_dir()), *hcfg.include_paths])


def load_tasks(tm: Any, tasks: list[str]) -> dict[str, Any]:
    """``{leaf task name: lm-eval Task}`` for the named tasks, groups and tags (data loaded).

    Raises:
        CogumiError: a name lm-eval does not know, or a data set that cannot be loaded.
    """
    known = set(tm.all_tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise CogumiError(f"lm-eval does not know the task(s) {', '.join(unknown)}",
                          "evaluate.benchmark.harness.tasks",
                          "use bundled cogumi_* tasks, standard names such as mmlu or gsm8k, "
                          "or add a folder of task YAMLs to include_paths")
    try:
        return dict(tm.load(list(tasks))["tasks"])
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds
        raise CogumiError(f"lm-eval could not load the data of {', '.join(tasks)} "
                          f"({exc.__class__.__name__}: {str(exc)[:200]})", "evaluate.benchmark.harness.tasks",
                          "standard tasks download from the Hugging Face Hub: check the network, "
                          "or run the bundled cogumi_* tasks offline") from None


def _hf_model(model: ModelConfig, hcfg: HarnessConfig) -> tuple[Any, str]:
    from lm_eval.models.huggingface import HFLM

    from cogumi.models.loading import hf_checkpoint, load_causal_lm, load_tokenizer, resolve_source
    from cogumi.models.resources import resolve_device

    src = resolve_source(model)
    if model.adapter and model.adapter.endswith(".gguf"):
        raise CogumiError("lm-eval runs HF weights and cannot apply a GGUF LoRA adapter", "student.adapter",
                          "point adapter at the PEFT adapter folder written by training")
    location = hf_checkpoint(model)
    gguf_file = model.gguf_file if src.kind != "gguf" else None
    device = resolve_device(model.device)
    lm = load_causal_lm(location, device=device, dtype=model.dtype, gguf_file=gguf_file, adapter=model.adapter)
    how = f"lm-eval HFLM on {device}"
    if model.adapter:
        lm = lm.merge_and_unload()
        how += " (PEFT adapter merged)"
    if src.kind == "gguf":
        how += " (GGUF dequantised to an HF checkpoint)"
    tokenizer = load_tokenizer(location, gguf_file)
    max_length = hcfg.max_length or model.n_ctx
    return HFLM(pretrained=lm, tokenizer=tokenizer, batch_size=hcfg.batch_size, max_length=max_length,
                device=device), how


def _endpoint_args(model: ModelConfig, hcfg: HarnessConfig, chat: bool) -> dict[str, Any]:
    base = (model.base_url or "").rstrip("/")
    args: dict[str, Any] = {"base_url": f"{base}/chat/completions" if chat else f"{base}/completions",
                            "model": model.model, "num_concurrent": 1, "max_retries": model.max_retries + 1,
                            "timeout": int(model.timeout_s)}
    key = os.environ.get(model.api_key_env, "") if model.api_key_env else ""
    if key:
        args["header"] = {"Authorization": f"Bearer {key}"}
    if chat:
        args["tokenizer_backend"] = None
    else:
        if not hcfg.tokenizer:
            raise CogumiError("endpoint_completions needs the endpoint model's tokenizer",
                              "evaluate.benchmark.harness.tokenizer", "set it to an HF tokenizer id or folder")
        args.update(tokenizer_backend="huggingface", tokenizer=hcfg.tokenizer)
    return args


def run_harness(model: ModelConfig, hcfg: HarnessConfig) -> dict[str, Any]:
    """Run the configured tasks on ``model``.

    Returns:
        ``{"tasks": {name: {"metrics": {...}, "n": int, "output_type": str}}, "skipped": {name: reason},
        "samples": [...], "method": str}``.
    """
    import lm_eval

    with _quiet_lm_eval():
        tm = task_manager(hcfg)
        tasks = load_tasks(tm, hcfg.tasks)
        types = {name: task.config.output_type for name, task in tasks.items()}
        common = dict(task_manager=tm, limit=hcfg.limit, num_fewshot=hcfg.num_fewshot, log_samples=True,
                      bootstrap_iters=0, system_instruction=hcfg.system_instruction,
                      gen_kwargs={"max_gen_toks": hcfg.max_gen_toks} if hcfg.max_gen_toks else None)
        runs: list[tuple[Any, dict[str, Any], list[str], bool]] = []
        skipped: dict[str, str] = {}
        if model.backend == "openai":
            gen = [t for t, kind in types.items() if kind == GENERATE]
            other = [t for t, kind in types.items() if kind != GENERATE]
            if gen:
                runs.append(("local-chat-completions", _endpoint_args(model, hcfg, chat=True), gen, True))
            if other and hcfg.endpoint_completions:
                runs.append(("local-completions", _endpoint_args(model, hcfg, chat=False), other,
                             hcfg.apply_chat_template))
            else:
                skipped |= {t: "loglikelihood task: a chat endpoint returns no prompt logprobs "
                               "(set evaluate.benchmark.harness.endpoint_completions for /v1/completions)"
                            for t in other}
            method = f"lm-eval local-chat-completions at {model.base_url}"
        else:
            lm, method = _hf_model(model, hcfg)
            runs.append((lm, {}, list(types), hcfg.apply_chat_template))
        result: dict[str, Any] = {"tasks": {}, "skipped": skipped, "samples": [], "method": method,
                                  "lm_eval_version": _version()}
        for lm, args, names, chat in runs:
            if not names:
                continue
            res = lm_eval.simple_evaluate(model=lm, model_args=args or None, tasks=[tasks[n] for n in names],
                                          apply_chat_template=chat, **common)
            _collect(res, types, result)
    return result


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("lm-eval")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _collect(res: dict[str, Any], types: dict[str, str], out: dict[str, Any]) -> None:
    for task, values in res["results"].items():
        if task not in types:
            continue  # a group's aggregate row
        metrics = {k: float(v) for k, v in values.items()
                   if isinstance(v, (int, float)) and "stderr" not in k and k != "sample_len"}
        n = res.get("n-samples", {}).get(task, {}).get("effective")
        out["tasks"][task] = {"metrics": metrics, "n": n, "output_type": types[task]}
    for task, samples in (res.get("samples") or {}).items():
        for s in samples:
            out["samples"].append({"task": task, "doc_id": s.get("doc_id"), "target": str(s.get("target")),
                                   "response": _short(s.get("filtered_resps")),
                                   "metrics": {m: s.get(m) for m in s.get("metrics", [])}})


def _short(value: Any) -> str:
    text = str(value[0] if isinstance(value, list) and len(value) == 1 else value)
    return text[:300]


def primary_metric(task: dict[str, Any]) -> tuple[str, float] | None:
    """The headline number of a task result (acc, else flexible/strict exact match, else the first)."""
    metrics = task.get("metrics", {})
    for key in ("acc,none", "exact_match,flexible-extract", "exact_match,strict-match", "exact_match,first-line"):
        if key in metrics:
            return key, metrics[key]
    return next(iter(metrics.items()), None)
