"""User-facing errors: one paragraph that says what went wrong, where, and what to do.

Every error Cogumi raises on purpose is a :class:`CogumiError`; the CLI prints its
message without a traceback and exits with status 2.
"""

from __future__ import annotations


class CogumiError(Exception):
    """An error meant for the user, not a bug.

    Args:
        what: What went wrong, in one sentence.
        where: The file, key, URL or stage it concerns.
        fix: What the user can do about it.
    """

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        parts = [what.rstrip(".") + "."]
        if where:
            parts.append(f"Where: {where}.")
        if fix:
            parts.append(f"Fix: {fix.rstrip('.')}.")
        super().__init__(" ".join(parts))


class ConfigError(CogumiError):
    """A configuration file or override is invalid."""


class ArtifactError(CogumiError):
    """A run directory or manifest is missing, corrupt or belongs to another run."""


class ModelLoadError(CogumiError):
    """A model, tokenizer or adapter could not be loaded."""


class BackendError(CogumiError):
    """An inference backend failed to answer (refused connection, bad reply, ...)."""


class DeviceError(CogumiError):
    """The requested device (e.g. CUDA) is not available on this machine."""
