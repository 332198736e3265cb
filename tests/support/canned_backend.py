"""A fast, deterministic inference backend for tests and benchmarks that need many answers quickly.

It answers a chat with text derived from the last user message (so different prompts get
different answers) and answers a quality-judge conversation (a ``response_format`` JSON
schema, or the judge's system prompt) with a full rubric verdict. Usage counts are
characters / 4, like a tokenizer-free estimate; nothing is random.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from cogumi.models.inference import Generation, Message, SamplingParams, Usage

_WORDS = ("clear", "answer", "step", "first", "then", "because", "result", "simple", "check", "value", "note",
          "example", "so", "the", "is", "a", "we", "it")


class CannedBackend:
    """``InferenceBackend`` with canned answers (see the module docstring)."""

    name = "canned"

    def __init__(self, model_name: str = "canned", words: int = 40):
        self.model_name, self.words = model_name, words

    def chat(self, messages: list[Message], params: SamplingParams | None = None) -> Generation:
        params = params or SamplingParams()
        prompt = messages[-1]["content"] if messages else ""
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).digest()
        judging = params.response_format is not None or any(
            m["role"] == "system" and "grade answers" in m["content"] for m in messages)
        if judging:
            text = json.dumps({"accuracy": 2 + digest[0] % 2, "completeness": 2, "coherence": 2, "helpfulness": 3})
        else:
            n = min(self.words, params.max_tokens)
            text = f"{prompt.split('?')[0][:60]}: " + " ".join(_WORDS[(digest[i % 32] + i) % len(_WORDS)]
                                                               for i in range(n)) + "."
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages)
        completion_tokens = max(1, len(text) // 4)
        finish = "length" if not judging and completion_tokens >= params.max_tokens else "stop"
        return Generation(text, finish, Usage(prompt_tokens, completion_tokens), self.model_name, self.name, 0.0)

    def complete(self, prompt: str, params: SamplingParams | None = None) -> Generation:
        return self.chat([{"role": "user", "content": prompt}], params)

    def stream_chat(self, messages: list[Message], params: SamplingParams | None = None) -> Iterator[str]:
        yield self.chat(messages, params).text

    def close(self) -> None:
        pass
