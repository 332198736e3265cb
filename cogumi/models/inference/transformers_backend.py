"""transformers (+PEFT) backend: any HF causal LM, optionally 4-bit, with an adapter."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from cogumi.models.inference.base import (
    Generation,
    Message,
    SamplingParams,
    TokenLogprob,
    Usage,
    validate_messages,
)

log = logging.getLogger(__name__)


class TransformersBackend:
    """Runs ``model.generate`` in-process.

    Args:
        model, tokenizer: an already loaded causal LM (PEFT-wrapped or not) and its tokenizer.
        model_name: name reported in results.

    ``response_format`` is not enforced here (no constrained decoding): callers that
    need JSON must parse defensively; a warning is logged once.
    """

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, model_name: str):
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self._warned_format = False

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def chat(self, messages: list[Message], params: SamplingParams | None = None) -> Generation:
        """Apply the chat template and generate."""
        validate_messages(messages)
        return self._generate(self._chat_ids(messages), params or SamplingParams())

    def complete(self, prompt: str, params: SamplingParams | None = None) -> Generation:
        """Continue ``prompt`` verbatim."""
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids
        return self._generate(ids, params or SamplingParams())

    def stream_chat(self, messages: list[Message], params: SamplingParams | None = None) -> Iterator[str]:
        """Yield decoded text pieces as ``generate`` produces them (runs it in a thread)."""
        from transformers import TextIteratorStreamer

        validate_messages(messages)
        params = params or SamplingParams()
        ids = self._chat_ids(messages).to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(input_ids=ids, attention_mask=ids.new_ones(ids.shape), streamer=streamer,
                      **self._gen_kwargs(params))
        thread = threading.Thread(target=self.model.generate, kwargs=kwargs, daemon=True)
        thread.start()
        yield from (piece for piece in streamer if piece)
        thread.join()

    def close(self) -> None:
        """Drop the model reference."""
        self.model = None

    # ------------------------------------------------------------------ internals

    def _chat_ids(self, messages: list[Message]) -> Any:
        out = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        return out["input_ids"]

    def _gen_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        import torch

        sample = params.temperature > 0
        kw: dict[str, Any] = {"max_new_tokens": params.max_tokens, "do_sample": sample,
                              "pad_token_id": self.tokenizer.pad_token_id}
        if sample:
            kw.update(temperature=params.temperature, top_p=params.top_p)
            if params.seed is not None:
                torch.manual_seed(params.seed)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kw.update(stop_strings=params.stop, tokenizer=self.tokenizer)
        if params.response_format and not self._warned_format:
            log.warning("transformers backend does not constrain output to response_format; parse defensively")
            self._warned_format = True
        return kw

    def _generate(self, input_ids: Any, params: SamplingParams) -> Generation:
        import torch

        ids = input_ids.to(self.device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=ids.new_ones(ids.shape),
                                      return_dict_in_generate=True, output_logits=params.logprobs,
                                      **self._gen_kwargs(params))
        latency = time.perf_counter() - t0
        new = out.sequences[0, ids.shape[1]:]
        eos = set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}
        hit_eos = len(new) > 0 and int(new[-1]) in eos
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finish = "stop"
        if params.stop:
            cut = min((text.find(s) for s in params.stop if s in text), default=-1)
            text = text[:cut] if cut >= 0 else text
        if not hit_eos and len(new) >= params.max_tokens:
            finish = "length"
        logprobs = self._logprobs(new, out.logits, params.top_logprobs) if params.logprobs else None
        return Generation(text, finish, Usage(int(ids.shape[1]), int(len(new))), self.model_name,
                          self.name, latency, logprobs)

    def _logprobs(self, new: Any, logits: Any, top: int) -> list[TokenLogprob]:
        import torch

        result = []
        for tok, step_logits in zip(new.tolist(), logits):
            lp = torch.log_softmax(step_logits[0].float(), dim=-1)
            alts = {}
            if top:
                vals, idx = lp.topk(top)
                alts = {self.tokenizer.decode([i]): float(v) for v, i in zip(vals.tolist(), idx.tolist())}
            result.append(TokenLogprob(self.tokenizer.decode([tok]), float(lp[tok]), alts))
        return result


def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]
