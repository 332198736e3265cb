"""The model side of serving: one backend plus hot-swappable adapters, without Ray.

:class:`ModelWorker` is what the ``BaseModel`` and ``Modifiers`` deployments wrap.
Requests cross deployment handles as plain dicts (see :func:`gen_request`); answers
come back as ``Generation.as_dict()`` plus ``adapter`` and ``switch_ms``.

Every generation takes an optional ``stop`` event (set when the client went away): a
request still waiting for the worker gives up at once, a running one ends after its
current token (:class:`~cogumi.serve.cancel.CancelHook`) with ``finish_reason``
``cancelled``.

Adapters swap without reloading the base: on llama.cpp each GGUF LoRA is loaded
once next to the shared model (``llama_adapter_lora_init``) and switched per
request on the context (``llama_set_adapters_lora``); on transformers they are
named PEFT adapters switched with ``set_adapter``.

With ``batching`` on (llama.cpp only), chat and text requests go to a
:class:`~cogumi.models.inference.llamacpp_batch.BatchEngine` instead: many requests
decode together in one context, each with its own adapter, sampler, stream and stop
event (a stopped request frees its slot before the next step). Requests the engine
does not take (JSON-schema output) use the one-at-a-time path.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cogumi.config_base import ModelConfig
from cogumi.errors import ModelLoadError
from cogumi.models.inference import Generation, SamplingParams, TokenLogprob, Usage, make_backend
from cogumi.serve.adapters import AdapterSet, make_adapter_set
from cogumi.serve.cancel import CancelHook
from cogumi.serve.config import BatchingSettings, VllmSettings

_PARAM_KEYS = {f for f in SamplingParams.__dataclass_fields__}


class RequestError(ValueError):
    """A request the model cannot serve (maps to an HTTP 4xx in the API).

    Args:
        message: what is wrong, for the client.
        status: HTTP status (400, 404, ...).
        code: OpenAI error code, e.g. ``context_length_exceeded``.
        param: the request field concerned.
    """

    def __init__(self, message: str, status: int = 400, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message, self.status, self.code, self.param = message, status, code, param

    def __reduce__(self):  # keep fields when Ray pickles it across processes
        return (RequestError, (self.message, self.status, self.code, self.param))


def gen_request(kind: str, params: SamplingParams, messages: list[dict] | None = None, prompt: str | None = None,
                adapter: str | None = None, chosen_logprobs: bool = False) -> dict[str, Any]:
    """The dict a worker takes (picklable, backend-neutral).

    ``chosen_logprobs`` asks only for the generated tokens' logprobs (what the
    confidence cascade needs); llama.cpp then computes them in one vectorised pass.
    """
    return {"kind": kind, "messages": messages, "prompt": prompt, "adapter": adapter,
            "params": {k: getattr(params, k) for k in _PARAM_KEYS}, "chosen_logprobs": chosen_logprobs}


class ModelWorker:
    """A backend from ``make_backend`` plus optional adapters, safe for concurrent callers.

    Args:
        model: the base model config (any backend of the inference interface).
        adapters: domain -> adapter path, loadable on demand (None: base only).
        batching: continuous batching settings (None or disabled: one request at a time).
        vllm: vLLM settings; enabled, the worker runs a :class:`~cogumi.models.inference.vllm_backend.VllmEngine`
            (adapters as vLLM LoRAs) and loads no other backend.
    """

    def __init__(self, model: ModelConfig, adapters: dict[str, str] | None = None,
                 batching: BatchingSettings | None = None, vllm: VllmSettings | None = None):
        self.cfg = model
        self.vllm: Any = None
        if vllm is not None and vllm.enabled:
            from cogumi.models.inference.vllm_backend import VllmEngine

            self.vllm = VllmEngine(model.model, adapters, vllm.max_loras, vllm.max_lora_rank, model.n_ctx,
                                   vllm.gpu_memory_utilization)
        self.backend = self.vllm if self.vllm is not None else make_backend(model)
        self.n_ctx = model.n_ctx
        self.paths = dict(adapters or {})
        self.adapters: AdapterSet | None = (make_adapter_set(self.backend)
                                            if adapters is not None and self.vllm is None else None)
        self._lock = threading.Lock()  # one generation (and its adapter) at a time per worker
        self._cancel = CancelHook(self.backend)
        self.engine: Any = None
        self.prompts: Any = None
        if batching is not None and batching.enabled and self.backend.name == "llamacpp":
            from cogumi.models.inference.llamacpp_batch import BatchEngine, ChatPrompts

            llm: Any = getattr(self.backend, "llm")
            self.engine = BatchEngine(llm, batching.slots, model.n_ctx, model.n_threads or os.cpu_count() or 1,
                                      batching.n_batch)
            self.prompts = ChatPrompts(llm)

    # ------------------------------------------------------------------ adapters

    def load_adapter(self, name: str) -> None:
        """Load adapter ``name`` next to the base (no-op when loaded)."""
        if self.vllm is not None and name in self.paths:
            return  # vLLM loads LoRAs on demand (max_loras resident)
        if self.adapters is None or name not in self.paths:
            raise RequestError(f"unknown modifier '{name}'", 404, "model_not_found", "model")
        with self._lock:
            self.adapters.load(name, Path(self.paths[name]))
            self._share_with_engine(name)

    def _share_with_engine(self, name: str) -> None:
        handles = getattr(self.adapters, "_handles", None)
        if self.engine is not None and handles is not None and name in handles:
            self.engine.set_adapter(name, handles[name])

    def unload_adapter(self, name: str) -> None:
        """Free adapter ``name`` (safe to call twice)."""
        if self.adapters is not None:
            with self._lock:
                if self.engine is not None:
                    self.engine.set_adapter(name, None)
                self.adapters.unload(name)

    def _activate(self, name: str | None) -> float:
        if name is None and self.adapters is None:
            return 0.0
        if self.adapters is None:
            raise RequestError(f"this deployment serves no modifiers (asked for '{name}')", 404,
                               "model_not_found", "model")
        if name is not None and not self.adapters.loaded(name):
            if name not in self.paths:
                raise RequestError(f"unknown modifier '{name}'", 404, "model_not_found", "model")
            self.adapters.load(name, Path(self.paths[name]))
        return self.adapters.activate(name)

    # ------------------------------------------------------------------ generation

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under the served model's tokenizer."""
        if hasattr(self.backend, "count_tokens"):
            return int(self.backend.count_tokens(text))
        tok = getattr(self.backend, "tokenizer", None)
        return len(tok(text, add_special_tokens=False).input_ids) if tok is not None else len(text.split())

    def _check_context(self, req: dict[str, Any]) -> int:
        if req["kind"] == "chat":
            text = "\n".join(m["content"] for m in req["messages"])
            prompt_tokens = self.count_tokens(text) + 4 * len(req["messages"]) + 2
        else:
            prompt_tokens = self.count_tokens(req["prompt"])
        wanted = req["params"]["max_tokens"]
        if prompt_tokens + wanted > self.n_ctx:
            raise RequestError(f"this model's context is {self.n_ctx} tokens; the request has about "
                               f"{prompt_tokens} prompt tokens plus max_tokens {wanted}. Shorten the messages "
                               "or lower max_tokens", 400, "context_length_exceeded", "messages")
        return prompt_tokens

    @contextlib.contextmanager
    def _turn(self, stop: threading.Event | None) -> Iterator[bool]:
        """Hold the worker for one generation; yields False (without the lock) when ``stop`` came first."""
        while not self._lock.acquire(timeout=0.05):
            if stop is not None and stop.is_set():
                yield False
                return
        try:
            if stop is not None and stop.is_set():
                yield False
                return
            with self._cancel.scope(stop):
                yield True
        finally:
            self._lock.release()

    def _cancelled(self, req: dict[str, Any], prompt_tokens: int = 0) -> dict[str, Any]:
        gen = Generation("", "cancelled", Usage(prompt_tokens, 0), self.backend.model_name, self.backend.name, 0.0)
        return _answer(gen, req.get("adapter"), 0.0)

    # ------------------------------------------------------------------ batched generation

    def _batched(self, req: dict[str, Any]) -> bool:
        return self.vllm is not None or (self.engine is not None and not req["params"].get("response_format"))

    def _ensure_adapter(self, name: str | None) -> None:
        if name is None:
            return
        if self.adapters is None:
            raise RequestError(f"this deployment serves no modifiers (asked for '{name}')", 404,
                               "model_not_found", "model")
        if not self.adapters.loaded(name):
            self.load_adapter(name)
        self._share_with_engine(name)

    def _engine_events(self, req: dict[str, Any], stop: threading.Event | None) -> Iterator[dict[str, Any]]:
        """Events of ``req`` decoded by the batching engine (``{"text"}`` pieces, then ``done``)."""
        from cogumi.models.inference.base import validate_messages
        from cogumi.models.inference.llamacpp_batch import BatchRequest, events

        params = SamplingParams(**req["params"])
        if self.vllm is not None:
            yield from self._vllm_events(req, params, stop or threading.Event())
            return
        self._ensure_adapter(req.get("adapter"))
        if req["kind"] == "chat":
            validate_messages(req["messages"])
            tokens, template_stops = self.prompts.tokens(req["messages"])
        else:
            tokens, template_stops = self.prompts.completion_tokens(req["prompt"]), []
        params.stop = list(params.stop or []) + template_stops
        want_logprobs = params.logprobs or bool(req.get("chosen_logprobs"))
        stop = stop or threading.Event()
        try:
            yield from events(self.engine, lambda emit: BatchRequest(
                tokens, params, req.get("adapter"), stop, emit, logprobs=want_logprobs))
        except ValueError as exc:  # prompt + max_tokens beyond a slot's context
            raise RequestError(str(exc), 400, "context_length_exceeded", "messages") from None

    def _vllm_events(self, req: dict[str, Any], params: SamplingParams,
                     stop: threading.Event) -> Iterator[dict[str, Any]]:
        name = req.get("adapter")
        if name is not None and name not in self.paths:
            raise RequestError(f"unknown modifier '{name}'", 404, "model_not_found", "model")
        prompt = self.vllm.prompt(req["messages"]) if req["kind"] == "chat" else req["prompt"]
        want_logprobs = params.logprobs or bool(req.get("chosen_logprobs"))
        yield from self.vllm.run(prompt, params, name, want_logprobs, stop)

    def _engine_answer(self, req: dict[str, Any], done: dict[str, Any]) -> dict[str, Any]:
        if done["finish_reason"] == "error":
            raise RuntimeError(f"batched generation failed: {done.get('error')}")
        prompt_tokens = int(done.get("prompt_tokens", 0))
        gen = Generation(done.get("text", ""), done["finish_reason"],
                         Usage(prompt_tokens, len(done.get("tokens", []))), self.backend.model_name,
                         self.backend.name, float(done.get("latency_s", 0.0)), done.get("logprobs"))
        return _answer(gen, req.get("adapter"), 0.0)

    def generate(self, req: dict[str, Any], stop: threading.Event | None = None) -> dict[str, Any]:
        """Answer one request (``gen_request`` dict) in full.

        Args:
            req: a ``gen_request`` dict.
            stop: set when nobody waits for the answer any more; generation ends early.

        Returns:
            ``Generation.as_dict()`` plus ``adapter`` and ``switch_ms`` (``finish_reason``
            ``cancelled`` and the text so far when ``stop`` ended it).

        Raises:
            RequestError: unknown adapter, context too long, logprobs unavailable.
        """
        self._check_context(req)
        if self._batched(req):
            for ev in self._engine_events(req, stop):
                if ev.get("done"):
                    return self._engine_answer(req, ev)
            raise RuntimeError("the batching engine ended a request without a final event")
        params = SamplingParams(**req["params"])
        fast = bool(req.get("chosen_logprobs")) and self._fast_logprobs_ok()
        top_k = params.top_logprobs
        if fast:  # logprobs from the kept logits in one pass, not llama-cpp-python's per-token full sort
            params.logprobs, params.top_logprobs = False, 0
        with self._turn(stop) as mine:
            if not mine:
                return self._cancelled(req)
            switch_s = self._activate(req.get("adapter"))
            try:
                gen = (self.backend.chat(req["messages"], params) if req["kind"] == "chat"
                       else self.backend.complete(req["prompt"], params))
            except ValueError as exc:  # bad sampling/logprob request caught by the backend
                raise RequestError(str(exc), 400, "invalid_request_error") from None
            if stop is not None and stop.is_set():
                gen.finish_reason = "cancelled"
            elif fast:
                gen.logprobs = self._chosen_logprobs(gen.usage.prompt_tokens, top_k)
        return _answer(gen, req.get("adapter"), switch_s)

    def _fast_logprobs_ok(self) -> bool:
        return self.backend.name == "llamacpp" and bool(getattr(self.backend, "logits_all", False))

    def _chosen_logprobs(self, prompt_tokens: int, top_k: int = 0) -> list[TokenLogprob]:
        """Logprobs of the generated tokens (and their ``top_k`` alternatives) from llama.cpp's kept logits.

        Row ``i`` of ``scores`` predicts token ``i + 1``; the last sampled token is never
        evaluated, so it is not in ``input_ids`` and gets no logprob.
        """
        import numpy as np

        llm: Any = getattr(self.backend, "llm")
        n = int(llm.n_tokens)
        if prompt_tokens < 1 or n <= prompt_tokens:
            return []
        ids = np.asarray(llm.input_ids[prompt_tokens:n])
        rows = np.asarray(llm.scores[prompt_tokens - 1:n - 1], dtype=np.float64)
        rows = rows - rows.max(axis=1, keepdims=True)
        logp = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
        chosen = logp[np.arange(len(ids)), ids]
        tops: list[dict[str, float]] = [{} for _ in ids]
        if top_k > 0:
            idx = np.argpartition(-logp, top_k - 1, axis=1)[:, :top_k]
            for r, cols in enumerate(idx):
                for c in sorted(cols, key=lambda c: -logp[r, c]):
                    tops[r][self._piece(llm, int(c))] = float(logp[r, c])
        return [TokenLogprob(self._piece(llm, int(i)), float(lp), top) for i, lp, top in zip(ids, chosen, tops)]

    @staticmethod
    def _piece(llm: Any, token: int) -> str:
        return llm.detokenize([token]).decode("utf-8", "replace")

    def stream(self, req: dict[str, Any], stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:
        """Yield ``{"text": piece}`` events, then one ``{"done": True, finish_reason, usage, ...}``.

        ``stop`` ends generation early (client went away); the final event still comes.
        Raw completions are generated in full and sent as one piece.
        """
        prompt_tokens = self._check_context(req)
        if self._batched(req):
            for ev in self._engine_events(req, stop):
                if ev.get("done"):
                    yield {"done": True, **self._engine_answer(req, ev)}
                else:
                    yield ev
            return
        params = SamplingParams(**req["params"])
        t0 = time.perf_counter()
        if req["kind"] != "chat":
            answer = self.generate(req, stop)
            yield {"text": answer["text"]}
            yield {"done": True, **answer}
            return
        pieces: list[str] = []
        switch_s = 0.0
        with self._turn(stop) as mine:
            if not mine:
                yield {"done": True, **self._cancelled(req, prompt_tokens)}
                return
            switch_s = self._activate(req.get("adapter"))
            it = self.backend.stream_chat(req["messages"], params)
            try:
                for piece in it:
                    pieces.append(piece)
                    yield {"text": piece}
                    if stop is not None and stop.is_set():
                        break
            finally:
                close = getattr(it, "close", None)
                if close:
                    close()
        text = "".join(pieces)
        completion = self.count_tokens(text) if text else 0
        finish = "length" if completion >= params.max_tokens else "stop"
        if stop is not None and stop.is_set():
            finish = "cancelled"
        yield {"done": True, "text": text, "finish_reason": finish, "model": self.backend.model_name,
               "backend": self.backend.name, "latency_s": round(time.perf_counter() - t0, 4), "logprobs": None,
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                         "total_tokens": prompt_tokens + completion},
               "adapter": req.get("adapter"), "switch_ms": round(switch_s * 1000, 3)}

    def close(self) -> None:
        """Free adapters and the model."""
        if self.engine is not None:
            self.engine.close()
        if self.vllm is not None:
            self.vllm.close()
            return
        if self.adapters is not None:
            self.adapters.close()
        self.backend.close()


def _answer(gen: Generation, adapter: str | None, switch_s: float) -> dict[str, Any]:
    return {**gen.as_dict(), "adapter": adapter, "switch_ms": round(switch_s * 1000, 3)}


def resolve_adapters(adapters_dir: str | None, explicit: dict[str, str], backend: str) -> dict[str, str]:
    """Domain -> adapter path from ``adapters_dir/<domain>/`` plus explicit entries (which win).

    In each domain folder llama.cpp takes the single ``*.gguf`` file; transformers takes
    the folder when it holds ``adapter_config.json`` (a PEFT adapter).

    Raises:
        ModelLoadError: the folder or an explicit path does not exist, or a domain folder has no adapter.
    """
    from cogumi.serve.config import valid_domain

    found: dict[str, str] = {}
    if adapters_dir:
        root = Path(adapters_dir)
        if not root.is_dir():
            raise ModelLoadError(f"adapters folder {root} does not exist", "serve.adapters_dir",
                                 "run `cogumi modifiers` first or point serve.adapters_dir at its adapters/ folder")
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and valid_domain(p.name)):
            found[sub.name] = str(_adapter_in(sub, backend))
    for name, path in explicit.items():
        if not Path(path).exists():
            raise ModelLoadError(f"adapter for modifier '{name}' not found at {path}", f"serve.modifiers.{name}",
                                 "fix the path or remove the entry")
        found[name] = path
    return found


def _adapter_in(folder: Path, backend: str) -> Path:
    if backend == "llamacpp":
        ggufs = sorted(folder.glob("*.gguf"))
        if len(ggufs) == 1:
            return ggufs[0]
        what = "no .gguf file" if not ggufs else f"{len(ggufs)} .gguf files"
        raise ModelLoadError(f"adapter folder {folder} has {what}; llama.cpp needs exactly one GGUF LoRA",
                             str(folder), "export the adapter to GGUF (cogumi compress) or name it in serve.modifiers")
    if (folder / "adapter_config.json").is_file():
        return folder
    peft = [p for p in folder.iterdir() if (p / "adapter_config.json").is_file()]
    if len(peft) == 1:
        return peft[0]
    raise ModelLoadError(f"adapter folder {folder} holds no PEFT adapter (adapter_config.json)", str(folder),
                         "point serve.modifiers.<domain> at the PEFT adapter folder")
