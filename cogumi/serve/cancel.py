"""Stop a backend's generation between tokens once the request that asked for it is gone.

The inference backends (:mod:`cogumi.models.inference`) take no cancel argument, so
:class:`CancelHook` wraps the token loop of the one backend object a worker serves:

- llama.cpp: ``Llama.generate``, the per-token generator every chat and text
  completion of llama-cpp-python runs through, stops yielding;
- transformers: ``model.generate`` gets one more ``StoppingCriteria``.

Inside ``with hook.scope(stop):`` a set ``stop`` event ends the running generation
after at most one more token (the prompt pass itself is not interrupted); the backend
then returns what it has. Other backends (an OpenAI-compatible server) are left as
they are: only a stream's consumer can stop them, between pieces.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any

_MARK = "_cogumi_cancellable"


class CancelHook:
    """Per-request stop events for one backend's generation loop.

    Args:
        backend: a backend from ``make_backend``; its token loop is wrapped on first use.
    """

    def __init__(self, backend: Any):
        self.backend = backend
        self._stop: threading.Event | None = None

    def current(self) -> threading.Event | None:
        """The stop event of the generation running now (None outside a scope)."""
        return self._stop

    @contextlib.contextmanager
    def scope(self, stop: threading.Event | None) -> Iterator[None]:
        """Let ``stop`` end the generations started inside this block (callers hold the worker lock)."""
        self._install()
        self._stop = stop
        try:
            yield
        finally:
            self._stop = None

    def _install(self) -> None:
        llm = getattr(self.backend, "llm", None)
        if llm is not None and not getattr(llm.generate, _MARK, False):
            llm.generate = _stoppable_tokens(llm.generate, self.current)
        model = getattr(self.backend, "model", None)  # PEFT may have replaced it since last time
        if getattr(self.backend, "name", "") == "transformers" and model is not None \
                and not getattr(model.generate, _MARK, False):
            model.generate = _with_stopping(model.generate, self.current)


def _stoppable_tokens(generate: Callable[..., Generator[int, Any, None]],
                      current: Callable[[], threading.Event | None]) -> Callable[..., Iterator[int]]:
    """``Llama.generate`` that ends (as if at ``max_tokens``) once the caller's stop event is set."""

    def tokens(*args: Any, **kwargs: Any) -> Iterator[int]:
        stop = current()  # captured now: the event belongs to this call
        if stop is not None and stop.is_set():
            return
        inner = generate(*args, **kwargs)
        try:
            for token in inner:
                if stop is not None and stop.is_set():
                    return
                yield token
        finally:
            inner.close()

    setattr(tokens, _MARK, True)
    return tokens


def _with_stopping(generate: Callable[..., Any], current: Callable[[], threading.Event | None]) -> Callable[..., Any]:
    """``model.generate`` with a stopping criterion on the caller's stop event."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stopped(StoppingCriteria):
        def __init__(self, stop: threading.Event):
            self.stop = stop

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            return torch.full((input_ids.shape[0],), self.stop.is_set(), dtype=torch.bool, device=input_ids.device)

    def run(*args: Any, **kwargs: Any) -> Any:
        stop = current()  # captured now: streaming runs this in another thread after the scope
        if stop is not None:
            criteria = StoppingCriteriaList(kwargs.pop("stopping_criteria", None) or [])
            criteria.append(_Stopped(stop))
            kwargs["stopping_criteria"] = criteria
        return generate(*args, **kwargs)

    setattr(run, _MARK, True)
    return run
