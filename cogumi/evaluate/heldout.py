"""Held-out items per served domain, and scorers of answer/text likelihood for any model.

The same items are used by every before/after comparison of the pipeline (training
gates, adapter gates, the final start-vs-served evaluation), so the numbers agree:

- ``text``: the bundled held-out paragraphs (``heldout.txt``), one item per paragraph;
- ``math``: the ``heldout`` split of the bundled simple-math set (known numeric answers);
- ``code``: the bundled MBPP-style problems (reference solutions and tests).

None of these texts is used for training by the embedded run (curation draws its
prompts from ``seed_prompts.jsonl``, the math modifier from the ``train`` split).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from cogumi.config_base import ModelConfig
from cogumi.errors import CogumiError
from cogumi.jsonl import read_jsonl
from cogumi.models.inference import Message


@dataclass
class HeldOutItem:
    """One held-out item: a chat prompt and the reference answer (``text`` items have no prompt)."""

    suite: str
    id: str
    messages: list[Message]
    reference: str
    answer: str | None = None  # math: the expected number
    tests: list[str] = field(default_factory=list)  # code: assertions
    problem: Any = None  # code: the CodeProblem


def text_items(limit: int | None = None) -> list[HeldOutItem]:
    """Paragraphs of the bundled held-out text."""
    from cogumi.evaluate.perplexity import bundled_text

    paras = [p.strip() for p in bundled_text().split("\n") if p.strip()]
    return [HeldOutItem("text", f"heldout-{i}", [], p) for i, p in enumerate(paras[:limit])]


def math_items(limit: int | None = None) -> list[HeldOutItem]:
    """The ``heldout`` split of the bundled simple-math set."""
    path = resources.files("cogumi.evaluate") / "data" / "simple_math.jsonl"
    rows = read_jsonl(path)
    rows = [r for r in rows if r.get("split") == "heldout"][:limit]
    return [HeldOutItem("math", r["id"], [{"role": "user", "content": r["prompt"]}], r["answer"], answer=r["answer"])
            for r in rows]


def code_items(limit: int | None = None) -> list[HeldOutItem]:
    """The bundled MBPP-style problems, with their reference solutions as the reference answer."""
    from cogumi.evaluate.codebench import chat_prompt, load_mbpp, reference_completion

    return [HeldOutItem("code", p.task_id, [{"role": "user", "content": chat_prompt(p)}], reference_completion(p),
                        problem=p) for p in load_mbpp(limit=limit) if p.reference]


class Scorer(Protocol):
    """Negative log-likelihood (nats) of a reference under one model."""

    def answer_nll(self, messages: list[Message], answer: str) -> tuple[float, int]:
        """(summed NLL, tokens) of ``answer`` as the assistant's reply to ``messages``."""
        ...

    def text_nll(self, text: str) -> tuple[float, int]:
        """(summed NLL, scored tokens) of plain ``text``."""
        ...

    def close(self) -> None:
        """Free the model."""
        ...


def _nll(logprobs_rows: Any, targets: list[int]) -> float:
    import numpy as np

    return float(-logprobs_rows[np.arange(len(targets)), targets].sum())


class LlamaCppScorer:
    """Scores with llama.cpp: a GGUF, optionally with a GGUF LoRA (what serving runs)."""

    def __init__(self, gguf: str, lora: str | None = None, n_ctx: int = 1024, n_threads: int | None = None):
        from cogumi.models.inference.llamacpp_backend import LlamaCppBackend

        self.backend = LlamaCppBackend(gguf, n_ctx=n_ctx, n_threads=n_threads, logits_all=True, lora_path=lora)
        self.n_ctx = n_ctx
        llm = self.backend.llm
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise CogumiError(f"{gguf} has no chat template", gguf, "export the GGUF with its tokenizer's template")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        token = lambda i: llm._model.token_get_text(i) if i >= 0 else ""  # noqa: E731
        self.formatter = Jinja2ChatFormatter(template, eos_token=token(llm.token_eos()),
                                             bos_token=token(llm.token_bos()))

    def _score(self, ids: list[int], start: int) -> tuple[float, int]:
        from cogumi.compress.quality import llamacpp_logits, log_softmax

        ids = ids[: self.n_ctx]
        if len(ids) - start < 1:
            return 0.0, 0
        logp = log_softmax(llamacpp_logits(self.backend, ids))
        return _nll(logp[start - 1: len(ids) - 1], ids[start:]), len(ids) - start

    def answer_nll(self, messages: list[Message], answer: str) -> tuple[float, int]:
        llm = self.backend.llm
        prompt = self.formatter(messages=messages).prompt  # type: ignore[arg-type]  # llama_cpp's TypedDicts
        p_ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        a_ids = llm.tokenize(answer.encode(), add_bos=False, special=False)
        return self._score(p_ids + a_ids, len(p_ids))

    def text_nll(self, text: str) -> tuple[float, int]:
        ids = self.backend.llm.tokenize(text.encode(), add_bos=True, special=False)
        return self._score(ids, 1)

    def close(self) -> None:
        self.backend.close()


class HFScorer:
    """Scores with transformers (fp32 on CPU, the model's dtype on GPU): a merged checkpoint."""

    def __init__(self, model_dir: str, n_ctx: int = 1024, adapter: str | None = None):
        from transformers import AutoTokenizer

        from cogumi.compress.checkpoint import load_for_eval

        self.model = load_for_eval(Path(model_dir))
        if adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, adapter).eval()
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.n_ctx = n_ctx

    def _score(self, ids: list[int], start: int) -> tuple[float, int]:
        import torch

        from cogumi.compress.quality import log_softmax

        ids = ids[: self.n_ctx]
        if len(ids) - start < 1:
            return 0.0, 0
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(torch.tensor([ids], device=device)).logits[0].float().cpu().numpy()
        logp = log_softmax(logits)
        return _nll(logp[start - 1: len(ids) - 1], ids[start:]), len(ids) - start

    def answer_nll(self, messages: list[Message], answer: str) -> tuple[float, int]:
        prompt = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        p_ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = self.tok(answer, add_special_tokens=False)["input_ids"]
        return self._score(p_ids + a_ids, len(p_ids))

    def text_nll(self, text: str) -> tuple[float, int]:
        ids = self.tok(text, add_special_tokens=True)["input_ids"]
        return self._score(ids, 1)

    def close(self) -> None:
        del self.model


def scorer_for(model: ModelConfig, adapter: str | None = None, n_threads: int | None = None) -> Scorer:
    """A scorer of ``model`` as its backend runs it (llama.cpp for GGUFs, else transformers)."""
    from cogumi.models.loading import hf_checkpoint, resolve_source

    if model.backend == "llamacpp":
        return LlamaCppScorer(resolve_source(model).location, adapter or model.adapter, n_threads=n_threads)
    if model.backend == "transformers":
        return HFScorer(hf_checkpoint(model), adapter=adapter or model.adapter)
    raise CogumiError(f"cannot score likelihoods through the {model.backend} backend", "model.backend",
                      "held-out likelihoods need a local model (llamacpp or transformers)")


def per_token(nll: float, tokens: int) -> float:
    """Mean NLL per token (nan for no tokens)."""
    return nll / tokens if tokens else math.nan
