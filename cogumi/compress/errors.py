"""Errors of the compression phase; each names the step and the file it concerns."""

from __future__ import annotations

from cogumi.errors import CogumiError


class CompressError(CogumiError):
    """A compression step cannot run on its input (unsupported architecture, bad calibration set...)."""


class GgufFileError(CompressError):
    """A GGUF file is truncated, corrupt, or does not round-trip through llama.cpp."""


class ArchiveError(CompressError):
    """A zstd archive is damaged or does not decompress to the recorded checksum."""


class QualityGateError(CompressError):
    """A step raised perplexity beyond the configured limit (``quality.on_fail: fail``)."""
