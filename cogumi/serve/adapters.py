"""Hot-swappable adapters on one loaded base model (llama.cpp GGUF LoRA or PEFT).

Loading an adapter never reloads the base; activating one is a pointer switch on
the llama.cpp context (plus dropping its prompt cache, whose keys/values were
computed under the previous adapter) or ``set_adapter`` on a PEFT model.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path
from typing import Any, Protocol

from cogumi.errors import ModelLoadError


class AdapterSet(Protocol):
    """Adapters attached to one base model."""

    def load(self, name: str, path: Path) -> None:
        """Load adapter ``name`` from ``path`` (no-op when already loaded)."""
        ...

    def loaded(self, name: str) -> bool:
        """Whether ``name`` is loaded."""
        ...

    def activate(self, name: str | None) -> float:
        """Make ``name`` (None: the bare base) the active adapter; returns seconds spent switching."""
        ...

    def unload(self, name: str) -> None:
        """Free ``name``; the base becomes active if it was."""
        ...

    def close(self) -> None:
        """Free every adapter."""
        ...


def make_adapter_set(backend: Any) -> AdapterSet:
    """The adapter set matching ``backend`` (llamacpp or transformers).

    Raises:
        ModelLoadError: the backend cannot hold adapters (e.g. ``openai``).
    """
    if backend.name == "llamacpp":
        return LlamaCppAdapters(backend)
    if backend.name == "transformers":
        return PeftAdapters(backend)
    raise ModelLoadError(f"backend '{backend.name}' cannot serve modifier adapters", "serve.base.backend",
                         "serve modifiers with the llamacpp or transformers backend")


class LlamaCppAdapters:
    """GGUF LoRA adapters on a :class:`~cogumi.models.inference.llamacpp_backend.LlamaCppBackend`."""

    def __init__(self, backend: Any):
        import llama_cpp

        self._lib = llama_cpp
        self.llm = backend.llm
        self._handles: dict[str, Any] = {}
        self.active: str | None = None

    def load(self, name: str, path: Path) -> None:
        if name in self._handles:
            return
        from cogumi.models.loading import check_gguf

        check_gguf(path)
        handle = self._lib.llama_adapter_lora_init(self.llm._model.model, str(path).encode())
        if not handle:
            raise ModelLoadError(f"llama.cpp could not load the LoRA adapter {path}", f"modifier '{name}'",
                                 "check that it is a GGUF LoRA exported for this base model's architecture")
        self._handles[name] = handle

    def loaded(self, name: str) -> bool:
        return name in self._handles

    def activate(self, name: str | None) -> float:
        if name == self.active:
            return 0.0
        t0 = time.perf_counter()
        ctx = self.llm._ctx.ctx
        if name is None:
            rc = self._lib.llama_set_adapters_lora(ctx, None, 0, None)
        else:
            arr = (self._lib.llama_adapter_lora_p_ctypes * 1)(self._handles[name])
            rc = self._lib.llama_set_adapters_lora(ctx, arr, 1, (ctypes.c_float * 1)(1.0))
        if rc:
            raise ModelLoadError(f"llama.cpp refused to activate adapter '{name}' (code {rc})", "modifier",
                                 "check that the adapter matches the base model")
        self.llm.reset()  # cached prompt keys/values belong to the previous adapter
        self.active = name
        return time.perf_counter() - t0

    def unload(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is None:
            return
        if self.active == name:
            self.activate(None)
        self._lib.llama_adapter_lora_free(handle)

    def close(self) -> None:
        for name in list(self._handles):
            self.unload(name)


class PeftAdapters:
    """Named PEFT adapters on a :class:`~cogumi.models.inference.transformers_backend.TransformersBackend`."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.active: str | None = None
        self._names: set[str] = set()

    def load(self, name: str, path: Path) -> None:
        if name in self._names:
            return
        from peft import PeftModel

        model = self.backend.model
        try:
            if isinstance(model, PeftModel) and name in model.peft_config:
                pass  # kept inside PEFT when it was the last adapter unloaded
            elif isinstance(model, PeftModel):
                model.load_adapter(str(path), adapter_name=name)
            else:
                self.backend.model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"PEFT could not load adapter {path} ({exc})", f"modifier '{name}'",
                                 "check that it is a PEFT adapter trained on this base model") from None
        self._names.add(name)
        self._apply(self.active)

    def loaded(self, name: str) -> bool:
        return name in self._names

    def _apply(self, name: str | None) -> None:
        model = self.backend.model
        if name is None:
            model.base_model.disable_adapter_layers()
        else:
            model.base_model.enable_adapter_layers()
            model.set_adapter(name)

    def activate(self, name: str | None) -> float:
        if name == self.active or not self._names:
            return 0.0
        t0 = time.perf_counter()
        self._apply(name)
        self.active = name
        return time.perf_counter() - t0

    def unload(self, name: str) -> None:
        if name not in self._names:
            return
        if self.active == name:
            self.activate(None)
        self._names.discard(name)
        if self._names:
            self.backend.model.delete_adapter(name)

    def close(self) -> None:
        for name in list(self._names):
            self.unload(name)
