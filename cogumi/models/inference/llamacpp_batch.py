"""Continuous batching for llama.cpp: many sequences per ``llama_decode`` in one context.

:class:`BatchEngine` owns a second llama.cpp context on the model a
:class:`~cogumi.models.inference.llamacpp_backend.LlamaCppBackend` already loaded,
created with ``n_seq_max`` sequence slots (each slot has its own KV stream of
``n_ctx`` tokens). One scheduler thread owns that context; callers only put
requests on a queue and read events from their own queue, so requests join and
leave between decode steps:

1. admit waiting requests into free slots (tokenised prompt, own sampler chain);
2. pick the adapter whose turn it is and build one ``llama_batch`` of its
   sequences: one token per decoding sequence plus prompt chunks of new ones
   (at most ``n_batch`` tokens), logits only where a token gets sampled;
3. ``llama_decode``; sample each sequence from its own output row
   (``llama_sampler_sample``: greedy, or top-k/top-p/min-p/temperature with the
   request's seed, the chain llama-cpp-python builds), record its logprob,
   stream the piece, end it on end-of-generation, a stop string, ``max_tokens``
   or its stop event; an ended sequence's KV cells are removed
   (``llama_memory_seq_rm``) and its slot is free for the next request.

Adapters (GGUF LoRA) are set per context, not per sequence, so sequences of
different adapters never share a ``llama_decode``. Mixed-adapter load is
scheduled in turns: each step serves the next adapter group (round-robin over
the groups that have work; a group is all live sequences with the same adapter,
None being the bare base), so every group advances once per round and a group
of k sequences still decodes k tokens per step. With g groups a sequence gets a
token every g steps; the switch itself is a pointer swap on the context.

Prompts are formatted and tokenised exactly as llama-cpp-python does
(the GGUF's Jinja chat template, ``special=True``, no extra BOS), so greedy
answers equal the unbatched path's token for token.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cogumi.models.inference.base import Message, SamplingParams, TokenLogprob

log = logging.getLogger(__name__)

TOP_K, MIN_P, TYPICAL_P = 40, 0.05, 1.0  # llama-cpp-python's create_*_completion defaults
Event = dict[str, Any]


@dataclass
class BatchRequest:
    """One generation request inside the engine.

    Args:
        tokens: the prompt tokens (already formatted and tokenised).
        params: sampling parameters.
        adapter: adapter name (None: the bare base); must be registered with the engine.
        stop: set when nobody waits any more; the sequence ends before its next token.
        emit: called from the scheduler thread with each event (``{"token": ...}`` pieces, then ``done``).
        logprobs: record each generated token's logprob (and ``params.top_logprobs`` alternatives).
    """

    tokens: list[int]
    params: SamplingParams
    adapter: str | None
    stop: threading.Event
    emit: Callable[[Event], None]
    logprobs: bool = False
    stop_tokens: set[int] = field(default_factory=set)


@dataclass
class _Seq:
    req: BatchRequest
    slot: int
    sampler: Any
    n_past: int = 0  # tokens already in the KV cache
    pending: list[int] = field(default_factory=list)  # tokens to decode next
    out_tokens: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    sent: int = 0  # characters of text already streamed
    logprobs: list[TokenLogprob] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)


class BatchEngine:
    """Continuous batching over one llama.cpp context with ``slots`` sequences.

    Args:
        llm: a loaded ``llama_cpp.Llama`` (its model and tokenizer are shared; its own context is untouched).
        slots: sequences decoded together (``n_seq_max``).
        n_ctx: context tokens per slot.
        n_threads: CPU threads for decoding.
        n_batch: most tokens per ``llama_decode`` (prompt chunks are cut to fit).
    """

    def __init__(self, llm: Any, slots: int, n_ctx: int, n_threads: int, n_batch: int = 512):
        import llama_cpp

        self._lib, self.llm, self.slots, self.n_batch = llama_cpp, llm, slots, n_batch
        params = llama_cpp.llama_context_params()
        ctypes.pointer(params)[0] = llm.context_params  # same settings as the unbatched path (e.g. flash attention)
        params.n_ctx = n_ctx * slots
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = slots
        params.kv_unified = False  # one KV stream per slot: attention never scans other sequences' cells
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a batching context ({slots} slots x {n_ctx} tokens)")
        self.n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(self.ctx))
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.adapters: dict[str, Any] = {}
        self._active_adapter: str | None = None
        self._waiting: queue.Queue[BatchRequest] = queue.Queue()
        self._seqs: dict[int, _Seq] = {}
        self._free = list(range(slots))
        self._turn = 0
        self._closed = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cogumi-batch")
        self._thread.start()

    # ------------------------------------------------------------------ public

    def submit(self, req: BatchRequest) -> None:
        """Queue ``req``; its events arrive through ``req.emit`` from the scheduler thread."""
        if self._closed:
            raise RuntimeError("the batching engine is closed")
        if len(req.tokens) + req.params.max_tokens > self.n_ctx_seq:
            raise ValueError(f"prompt ({len(req.tokens)} tokens) plus max_tokens ({req.params.max_tokens}) exceeds "
                             f"the {self.n_ctx_seq}-token context of a batching slot")
        self._waiting.put(req)
        self._wake.set()

    def free_slots(self) -> int:
        """Slots not holding a sequence now."""
        return len(self._free)

    def set_adapter(self, name: str, handle: Any | None) -> None:
        """Register (handle) or forget (None) the GGUF LoRA ``name`` for requests that name it."""
        if handle is None:
            self.adapters.pop(name, None)
        else:
            self.adapters[name] = handle

    def close(self) -> None:
        """Stop the scheduler (live sequences end as cancelled) and free the context."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self._lib.llama_batch_free(self.batch)
        self._lib.llama_free(self.ctx)

    # ------------------------------------------------------------------ scheduler

    def _run(self) -> None:
        while not self._closed:
            try:
                self._admit()
                if not self._seqs:
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
                self._step()
            except Exception as exc:  # noqa: BLE001 - every live request gets the error, the engine goes on
                log.exception("batching step failed")
                for seq in list(self._seqs.values()):
                    self._finish(seq, "error", error=f"{type(exc).__name__}: {exc}")
        for seq in list(self._seqs.values()):
            self._finish(seq, "cancelled")
        while not self._waiting.empty():
            self._waiting.get_nowait().emit({"done": True, "finish_reason": "cancelled", "tokens": []})

    def _admit(self) -> None:
        while self._free and not self._waiting.empty():
            req = self._waiting.get_nowait()
            if req.stop.is_set():
                req.emit({"done": True, "finish_reason": "cancelled", "tokens": [], "text": "", "logprobs": None,
                          "prompt_tokens": len(req.tokens)})
                continue
            if req.adapter is not None and req.adapter not in self.adapters:
                req.emit({"done": True, "finish_reason": "error", "error": f"adapter '{req.adapter}' is not loaded"})
                continue
            slot = self._free.pop(0)
            self._lib.llama_memory_seq_rm(self.mem, slot, -1, -1)
            self._seqs[slot] = _Seq(req, slot, self._sampler(req.params), pending=list(req.tokens))

    def _group(self) -> list[_Seq]:
        """The sequences of the adapter whose turn it is (round-robin over adapters with work)."""
        names = sorted({s.req.adapter or "" for s in self._seqs.values()})
        name = names[self._turn % len(names)]
        self._turn += 1
        return [s for s in self._seqs.values() if (s.req.adapter or "") == name]

    def _use_adapter(self, name: str | None) -> None:
        if name == self._active_adapter:
            return
        lib = self._lib
        if name is None:
            rc = lib.llama_set_adapters_lora(self.ctx, None, 0, None)
        else:
            arr = (lib.llama_adapter_lora_p_ctypes * 1)(self.adapters[name])
            rc = lib.llama_set_adapters_lora(self.ctx, arr, 1, (ctypes.c_float * 1)(1.0))
        if rc:
            raise RuntimeError(f"llama.cpp refused to activate adapter '{name}' (code {rc})")
        self._active_adapter = name

    def _step(self) -> None:
        group = [s for s in self._group() if not self._stopped(s)]
        if not group:
            return
        self._use_adapter(group[0].req.adapter)
        b, budget = self.batch, self.n_batch
        n = 0
        outputs: list[tuple[_Seq, int]] = []
        for seq in sorted(group, key=lambda s: len(s.pending)):  # decoding sequences first, prompts fill the rest
            take = seq.pending[:max(0, budget - n)]
            if not take:
                continue
            for i, tok in enumerate(take):
                b.token[n] = tok
                b.pos[n] = seq.n_past + i
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = seq.slot
                b.logits[n] = False
                n += 1
            seq.n_past += len(take)
            del seq.pending[:len(take)]
            if not seq.pending:  # whole prompt (or the last sampled token) is in: sample from its last row
                b.logits[n - 1] = True
                outputs.append((seq, n - 1))
        b.n_tokens = n
        rc = self._lib.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for a batch of {n} tokens")
        for seq, row in outputs:
            self._sample(seq, row)

    def _stopped(self, seq: _Seq) -> bool:
        if seq.req.stop.is_set():
            self._finish(seq, "cancelled")
            return True
        return False

    def _sample(self, seq: _Seq, row: int) -> None:
        lib, req = self._lib, seq.req
        token = int(lib.llama_sampler_sample(seq.sampler, self.ctx, row))  # copies the row; the logits stay
        if lib.llama_vocab_is_eog(self.vocab, token) or token in req.stop_tokens:
            self._finish(seq, "stop")
            return
        seq.out_tokens.append(token)
        piece = self._piece(token)
        if req.logprobs:
            logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(self.ctx, row), shape=(self.n_vocab,))
            seq.logprobs.append(self._logprob(logits, token, piece, req.params.top_logprobs))
        seq.text += piece
        text = seq.text.decode("utf-8", "ignore")
        cut = _first_stop(text, req.params.stop)
        if cut is not None:
            self._flush(seq, text[:cut])
            self._finish(seq, "stop", text=text[:cut])
            return
        self._flush(seq, text[:len(text) - _held_back(text, req.params.stop)] if req.params.stop else text)
        if len(seq.out_tokens) >= req.params.max_tokens:
            self._finish(seq, "length")
            return
        seq.pending.append(token)

    def _flush(self, seq: _Seq, text: str) -> None:
        if len(text) > seq.sent and not text.endswith("\ufffd"):
            seq.req.emit({"text": text[seq.sent:]})
            seq.sent = len(text)

    def _logprob(self, logits: np.ndarray, token: int, piece: bytes, top_k: int) -> TokenLogprob:
        """``token``'s log-softmax (and the ``top_k`` best), from one logsumexp over the row, no full logp array."""
        peak = float(logits.max())
        lse = peak + float(np.log(np.exp(logits - peak, dtype=np.float32).sum(dtype=np.float64)))
        top: dict[str, float] = {}
        if top_k > 0:
            for c in sorted(np.argpartition(-logits, top_k - 1)[:top_k], key=lambda c: -logits[c]):
                top[self._piece(int(c)).decode("utf-8", "replace")] = float(logits[c]) - lse
        return TokenLogprob(piece.decode("utf-8", "replace"), float(logits[token]) - lse, top)

    def _finish(self, seq: _Seq, reason: str, text: str | None = None, error: str | None = None) -> None:
        self._seqs.pop(seq.slot, None)
        self._lib.llama_memory_seq_rm(self.mem, seq.slot, -1, -1)
        self._lib.llama_sampler_free(seq.sampler)
        self._free.append(seq.slot)
        final = seq.text.decode("utf-8", "ignore") if text is None else text
        if reason != "cancelled" or text is not None:
            self._flush(seq, final)
        event: Event = {"done": True, "finish_reason": reason, "text": final, "tokens": list(seq.out_tokens),
                        "prompt_tokens": len(seq.req.tokens),
                        "logprobs": seq.logprobs if seq.req.logprobs else None,
                        "latency_s": time.perf_counter() - seq.t0}
        if error:
            event["error"] = error
        seq.req.emit(event)

    def _piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[:n]

    def _sampler(self, p: SamplingParams) -> Any:
        """The sampler chain llama-cpp-python builds for these parameters (penalties off, as its defaults)."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if p.temperature <= 0.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            return chain
        seed = p.seed if p.seed is not None else lib.LLAMA_DEFAULT_SEED
        for s in (lib.llama_sampler_init_top_k(TOP_K), lib.llama_sampler_init_typical(TYPICAL_P, 1),
                  lib.llama_sampler_init_top_p(p.top_p, 1), lib.llama_sampler_init_min_p(MIN_P, 1),
                  lib.llama_sampler_init_temp(p.temperature), lib.llama_sampler_init_dist(seed)):
            lib.llama_sampler_chain_add(chain, s)
        return chain


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


def _held_back(text: str, stops: list[str]) -> int:
    """Characters at the end of ``text`` that may be the start of a stop string (not streamed yet)."""
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest


class ChatPrompts:
    """Chat messages -> prompt tokens and stop strings, exactly as llama-cpp-python's chat handler makes them."""

    def __init__(self, llm: Any):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = llm
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError("this GGUF has no chat template; batched chat needs one (serve.batching.enabled=false "
                             "uses llama-cpp-python's fallback formats)")
        eos, bos = llm.token_eos(), llm.token_bos()
        self.eos_id = eos
        text = llm._model.token_get_text
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=text(eos) if eos != -1 else "",
                                             bos_token=text(bos) if bos != -1 else "", stop_token_ids=[eos])

    def tokens(self, messages: list[Message]) -> tuple[list[int], list[str]]:
        """(prompt tokens, stop strings of the template)."""
        result = self.formatter(messages=list[Any](messages))
        toks = self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stops = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return list(toks), [s for s in stops if s]

    def completion_tokens(self, prompt: str) -> list[int]:
        """Raw-completion prompt tokens (BOS added when the model wants one, as llama-cpp-python does)."""
        bos = [self.llm.token_bos()] if self.llm._model.add_bos_token() and self.llm.token_bos() != -1 else []
        return bos + list(self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))


def events(engine: BatchEngine, req_factory: Callable[[Callable[[Event], None]], BatchRequest]) -> Iterator[Event]:
    """Submit the request ``req_factory(emit)`` builds and yield its events until ``done``."""
    box: queue.Queue[Event] = queue.Queue()
    req = req_factory(box.put)
    engine.submit(req)
    while True:
        try:
            ev = box.get(timeout=0.1)
        except queue.Empty:
            continue
        yield ev
        if ev.get("done"):
            return
