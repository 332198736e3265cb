"""A scripted inference backend for scorer tests (known right and wrong answers, failures on demand)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cogumi.models.inference import Generation, SamplingParams, Usage


class ScriptedBackend:
    """Implements the inference protocol; ``reply(messages_or_prompt, params)`` decides each answer.

    A reply that is an exception instance is raised (an endpoint failing mid-run).
    """

    name = "scripted"
    model_name = "scripted"

    def __init__(self, reply: Callable):
        self.reply, self.calls = reply, []

    def _answer(self, request, params):
        self.calls.append((request, params))
        out = self.reply(request, params or SamplingParams())
        if isinstance(out, BaseException):
            raise out
        return Generation(out, "stop", Usage(10, 5), self.model_name, self.name, 0.01)

    def chat(self, messages, params=None):
        return self._answer(messages, params)

    def complete(self, prompt, params=None):
        return self._answer(prompt, params)

    def stream_chat(self, messages, params=None):
        yield self._answer(messages, params).text

    def close(self):
        pass


@pytest.fixture
def scripted():
    """Factory: ``scripted(reply_fn)`` -> a ScriptedBackend."""
    return ScriptedBackend
