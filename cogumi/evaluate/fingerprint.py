"""What an evaluation stage's inputs are: the content of the model's weights, not the path that names them.

A benchmark, comparison or distillation of ``train/merged`` must run again after a retrain
writes new weights at the same path. The stage inputs therefore hold a content digest of
every file of the model (and adapter), from :func:`cogumi.artifacts.digest_path`, which
caches each file's SHA-256 by (path, size, mtime) so an unchanged rerun reads nothing.
"""

from __future__ import annotations

from cogumi.artifacts import digest_path
from cogumi.config_base import ModelConfig


def model_inputs(model: ModelConfig, role: str) -> dict[str, str]:
    """Stage input digests of ``model``: ``{role: weights digest}`` plus ``{role:adapter: ...}`` when it has one.

    Args:
        model: the model as configured (local folder, .gguf file, URI, embedded model, hub id or endpoint).
        role: the key it is recorded under (``student``, ``judge``...).

    Returns:
        Content digests for local files and URIs; for a served endpoint (``openai``) or a hub id, whose
        weights this process cannot read, a label saying so (the config hash covers its name).

    Raises:
        ModelLoadError: a local model path that does not exist.
        ArtifactError: a URI that cannot be read.
    """
    out = {role: _weights(model)}
    if model.adapter:
        out[f"{role}:adapter"] = digest_path(model.adapter)
    return out


def _weights(model: ModelConfig) -> str:
    from cogumi.models.loading import resolve_source

    if model.backend == "openai":
        return f"endpoint {model.base_url} model {model.model} (weights not visible; not digested)"
    if "://" in model.model:
        return digest_path(model.model)
    source = resolve_source(model)
    if source.kind == "hub":
        return f"hub {model.model} (not downloaded here; not digested)"
    return digest_path(source.location)
