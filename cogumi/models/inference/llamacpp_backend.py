"""llama.cpp backend through ``llama-cpp-python``: GGUF models, GGUF LoRA adapters."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cogumi.errors import ModelLoadError
from cogumi.models.inference.base import (
    Generation,
    Message,
    SamplingParams,
    TokenLogprob,
    Usage,
    validate_messages,
)
from cogumi.models.loading import check_gguf

if TYPE_CHECKING:
    from llama_cpp.llama_types import (
        ChatCompletionRequestMessage,
        CreateChatCompletionResponse,
        ChatCompletionStreamResponseDelta,
        CreateChatCompletionStreamResponse,
        CreateCompletionResponse,
    )


class LlamaCppBackend:
    """Runs a GGUF in-process with llama.cpp (CPU, or GPU layers when built with CUDA).

    Args:
        model_path: the .gguf file.
        n_ctx: context length.
        n_threads: CPU threads (default: all cores).
        lora_path: a GGUF LoRA adapter applied at load.
        logits_all: keep logits of every position; llama-cpp-python needs it for logprobs.
        n_gpu_layers: layers offloaded to the GPU (-1 = all) when built with CUDA.
    """

    name = "llamacpp"

    def __init__(self, model_path: str | Path, n_ctx: int = 2048, n_threads: int | None = None,
                 lora_path: str | None = None, logits_all: bool = False, seed: int = 0,
                 n_gpu_layers: int = 0, model_name: str | None = None):
        from llama_cpp import Llama

        path = check_gguf(model_path)
        if lora_path:
            check_gguf(lora_path)
        self.model_name = model_name or path.stem
        self.logits_all = logits_all
        self._lock = threading.Lock()
        try:
            with _quiet(), _extra_buffers(_extra_buffers_safe()):
                self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                                 lora_path=lora_path, logits_all=logits_all, seed=seed,
                                 n_gpu_layers=n_gpu_layers, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {path} ({exc})", str(path),
                                 "check that the file is a complete GGUF of a supported architecture") from None

    def _kwargs(self, params: SamplingParams) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_tokens": params.max_tokens, "temperature": params.temperature,
                              "top_p": params.top_p, "stop": params.stop or None}
        if params.seed is not None:
            kw["seed"] = params.seed
        return kw

    def _need_logits(self, params: SamplingParams) -> None:
        if params.logprobs and not self.logits_all:
            raise ValueError("logprobs need the llama.cpp model loaded with logits_all=True "
                             "(set logits_all: true in the model config)")

    def chat(self, messages: list[Message], params: SamplingParams | None = None) -> Generation:
        """Chat completion with the GGUF's own chat template; JSON schema output supported."""
        params = params or SamplingParams()
        validate_messages(messages)
        self._need_logits(params)
        kw = self._kwargs(params)
        if params.response_format:
            kw["response_format"] = _llama_response_format(params.response_format)
        if params.logprobs:  # llama-cpp-python returns no logprobs at all when top_logprobs is 0/None
            kw.update(logprobs=True, top_logprobs=max(1, params.top_logprobs))
        t0 = time.perf_counter()
        with self._lock:
            resp = cast("CreateChatCompletionResponse",  # not streamed: one response
                        self.llm.create_chat_completion(messages=_llama_messages(messages), **kw))
        latency = time.perf_counter() - t0
        choice = resp["choices"][0]
        logprobs = None
        if params.logprobs and (chosen := choice.get("logprobs")):
            logprobs = [TokenLogprob(t["token"], float(t["logprob"]),
                                     {a["token"]: float(a["logprob"])
                                      for a in (t.get("top_logprobs") or [])[:params.top_logprobs]})
                        for t in chosen.get("content") or []]
        return Generation(choice["message"].get("content") or "", choice.get("finish_reason") or "stop",
                          _usage(resp), self.model_name, self.name, latency, logprobs)

    def complete(self, prompt: str, params: SamplingParams | None = None) -> Generation:
        """Raw text completion."""
        params = params or SamplingParams()
        self._need_logits(params)
        kw = self._kwargs(params)
        if params.logprobs:
            kw["logprobs"] = max(params.top_logprobs, 1)
        t0 = time.perf_counter()
        with self._lock:
            resp = cast("CreateCompletionResponse",  # not streamed: one response
                        self.llm.create_completion(prompt=prompt, **kw))
        latency = time.perf_counter() - t0
        choice = resp["choices"][0]
        logprobs = None
        lp = choice.get("logprobs")
        if params.logprobs and lp:
            tops = lp.get("top_logprobs") or [{} for _ in lp["tokens"]]
            logprobs = [TokenLogprob(t, float(p), {k: float(v) for k, v in (top or {}).items()})
                        # None only for echoed prompt tokens, and nothing is echoed here
                        for t, p, top in zip(lp["tokens"], cast("list[float]", lp["token_logprobs"]), tops)]
        return Generation(choice.get("text") or "", choice.get("finish_reason") or "stop", _usage(resp),
                          self.model_name, self.name, latency, logprobs)

    def stream_chat(self, messages: list[Message], params: SamplingParams | None = None) -> Iterator[str]:
        """Yield text deltas as llama.cpp decodes them."""
        params = params or SamplingParams()
        validate_messages(messages)
        with self._lock:
            chunks = cast("Iterator[CreateChatCompletionStreamResponse]", self.llm.create_chat_completion(
                messages=_llama_messages(messages), stream=True, **self._kwargs(params)))
            for chunk in chunks:
                # an empty delta is the full delta type with no keys set
                delta = cast("ChatCompletionStreamResponseDelta", chunk["choices"][0].get("delta", {})).get("content")
                if delta:
                    yield delta

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` under this model's tokenizer."""
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def close(self) -> None:
        """Free the llama.cpp context."""
        with contextlib.suppress(Exception):
            self.llm.close()


_PARAMS_LOCK = threading.Lock()


def _extra_buffers_safe() -> bool:
    """Whether llama.cpp may use its extra CPU buffer types (AMX / repacked weights).

    On CPUs that advertise AMX inside VMs, llama.cpp's AMX buffers crash (SIGSEGV)
    on any multi-token batch (seen with llama-cpp-python 0.3.36 on Xeon with amx_int8).
    They are turned off there unless ``COGUMI_LLAMA_EXTRA_BUFTS=1``.
    """
    forced = os.environ.get("COGUMI_LLAMA_EXTRA_BUFTS")
    if forced is not None:
        return forced == "1"
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_int8" not in f.read()
    except OSError:
        return True


@contextlib.contextmanager
def _extra_buffers(enabled: bool) -> Iterator[None]:
    """Load with ``use_extra_bufts`` set as asked (llama-cpp-python exposes no argument for it)."""
    import llama_cpp.llama as llama_module

    if enabled:
        yield
        return
    with _PARAMS_LOCK:
        original = llama_module.llama_cpp.llama_model_default_params

        def params_without_extra_buffers():
            params = original()
            params.use_extra_bufts = False
            return params

        llama_module.llama_cpp.llama_model_default_params = params_without_extra_buffers
        try:
            yield
        finally:
            llama_module.llama_cpp.llama_model_default_params = original


def _llama_response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    """OpenAI ``json_schema`` format -> llama-cpp-python's ``{"type": "json_object", "schema": ...}``."""
    if fmt.get("type") == "json_schema":
        return {"type": "json_object", "schema": fmt.get("json_schema", {}).get("schema", {})}
    return fmt


def _llama_messages(messages: list[Message]) -> list[ChatCompletionRequestMessage]:
    """The messages as llama-cpp-python types them (same dicts; roles checked by ``validate_messages``)."""
    return cast("list[ChatCompletionRequestMessage]", messages)


def _usage(resp: Mapping[str, Any]) -> Usage:
    u = resp.get("usage") or {}
    return Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence llama.cpp's C-level stderr chatter while loading."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)
        os.close(devnull)
