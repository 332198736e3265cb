"""vLLM on GPU: continuous batching with the modifiers as LoRA adapters of one engine.

:class:`VllmEngine` runs vLLM's ``AsyncLLMEngine`` (created with ``enable_lora``,
``max_loras``, ``max_lora_rank``) on its own event loop in a background thread, so
the blocking :class:`~cogumi.serve.worker.ModelWorker` API stays as it is. Each
request may name a PEFT adapter; it is sent as a ``LoRARequest(name, int_id, path)``
and vLLM batches requests of different adapters in the same step (up to
``max_loras`` adapters resident on the GPU, others loaded on demand).

Events have the same shape as :class:`~cogumi.models.inference.llamacpp_batch.BatchEngine`'s
(``{"text": piece}`` then one ``done`` dict), so the worker treats both alike.

vLLM is the optional ``gpu`` extra (``pip install .[gpu]``); it is imported only
here, when a GPU deployment is configured. Not run on the CPU development machines.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from cogumi.models.inference.base import Message, SamplingParams, TokenLogprob

_IDS = itertools.count(1)


class VllmEngine:
    """One vLLM engine serving the base model and its LoRA adapters.

    Args:
        model: HF model directory or hub id (vLLM does not load GGUF LoRAs; adapters are PEFT folders).
        adapters: adapter name -> PEFT folder.
        max_loras: adapters resident on the GPU at once (vLLM's ``max_loras``).
        max_lora_rank: largest adapter rank.
        max_model_len: context length.
        gpu_memory_utilization: share of GPU memory vLLM may take.
    """

    name = "vllm"

    def __init__(self, model: str, adapters: dict[str, str] | None = None, max_loras: int = 4,
                 max_lora_rank: int = 16, max_model_len: int = 2048, gpu_memory_utilization: float = 0.85):
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError as exc:
            raise ImportError("the vLLM serving engine needs the gpu extra: pip install 'cogumi[gpu]'") from exc
        from transformers import AutoTokenizer

        self.model_name = model
        self.adapters = dict(adapters or {})
        self._ids = {name: i + 1 for i, name in enumerate(sorted(self.adapters))}
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        args = AsyncEngineArgs(model=model, enable_lora=bool(self.adapters), max_loras=max(1, max_loras),
                               max_lora_rank=max_lora_rank, max_model_len=max_model_len,
                               gpu_memory_utilization=gpu_memory_utilization)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="cogumi-vllm")
        self._thread.start()

        async def build() -> Any:
            return AsyncLLMEngine.from_engine_args(args)

        self.engine = asyncio.run_coroutine_threadsafe(build(), self.loop).result()

    def lora_request(self, adapter: str | None) -> Any:
        """vLLM's ``LoRARequest`` for ``adapter`` (None: the base)."""
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        if adapter not in self.adapters:
            raise KeyError(f"unknown modifier '{adapter}'")
        return LoRARequest(adapter, self._ids[adapter], self.adapters[adapter])

    def prompt(self, messages: list[Message]) -> str:
        """The chat prompt through the model's own chat template."""
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def run(self, prompt: str, params: SamplingParams, adapter: str | None, logprobs: bool,
            stop: threading.Event) -> Iterator[dict[str, Any]]:
        """Yield ``{"text": piece}`` events, then a ``done`` event; ``stop`` aborts the request in vLLM."""
        from vllm import SamplingParams as VllmParams

        sp = VllmParams(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                        seed=params.seed, stop=list(params.stop or []) or None,
                        logprobs=max(1, params.top_logprobs) if logprobs else None)
        request_id = f"cogumi-{next(_IDS)}"
        box: queue.Queue[dict[str, Any]] = queue.Queue()
        lora = self.lora_request(adapter)
        t0 = time.perf_counter()

        async def consume() -> None:
            sent, last = "", None
            try:
                async for out in self.engine.generate(prompt, sp, request_id, lora_request=lora):
                    last = out
                    text = out.outputs[0].text
                    if len(text) > len(sent):
                        box.put({"text": text[len(sent):]})
                        sent = text
                    if stop.is_set():
                        await self.engine.abort(request_id)
                        break
                box.put(self._done(last, stop.is_set(), logprobs, params.top_logprobs, t0))
            except Exception as exc:  # noqa: BLE001 - handed to the worker as an error event
                box.put({"done": True, "finish_reason": "error", "error": f"{type(exc).__name__}: {exc}"})

        asyncio.run_coroutine_threadsafe(consume(), self.loop)
        while True:
            ev = box.get()
            yield ev
            if ev.get("done"):
                return

    @staticmethod
    def _done(out: Any, cancelled: bool, logprobs: bool, top_k: int, t0: float) -> dict[str, Any]:
        if out is None:
            return {"done": True, "finish_reason": "cancelled", "text": "", "tokens": [], "prompt_tokens": 0,
                    "logprobs": None, "latency_s": time.perf_counter() - t0}
        gen = out.outputs[0]
        lps = None
        if logprobs and gen.logprobs:
            lps = []
            for tok, alts in zip(gen.token_ids, gen.logprobs):
                chosen = alts[tok]
                best = sorted(alts.values(), key=lambda a: -a.logprob)[:top_k]
                lps.append(TokenLogprob(chosen.decoded_token or "", float(chosen.logprob),
                                        {a.decoded_token or "": float(a.logprob) for a in best}))
        reason = "cancelled" if cancelled else ("length" if gen.finish_reason == "length" else "stop")
        return {"done": True, "finish_reason": reason, "text": gen.text, "tokens": list(gen.token_ids),
                "prompt_tokens": len(out.prompt_token_ids or []), "logprobs": lps,
                "latency_s": time.perf_counter() - t0}

    def close(self) -> None:
        """Stop the engine and its loop."""
        shutdown = getattr(self.engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)
