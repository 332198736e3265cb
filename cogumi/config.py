"""Typed configuration: one root model with a section per phase, loaded from YAML.

Shared sections are in :mod:`cogumi.config_base`; each phase owns ``cogumi/<phase>/config.py``.

Usage::

    cfg = load_config("configs/local.yaml", overrides=["train.lora.r=32"])

Every model forbids unknown keys, defaults live here (never in ``.get`` calls),
and every error names the key, the file and what was expected.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from cogumi.compress.config import CompressConfig
from cogumi.config_base import EMBEDDED_MODEL, ModelConfig, RunConfig, SamplingConfig, Section
from cogumi.curate.config import CurateConfig, TeacherConfig
from cogumi.errors import ConfigError
from cogumi.evaluate.config import EvaluateConfig
from cogumi.modifiers.config import ModifiersConfig
from cogumi.pipeline.config import PipelineConfig
from cogumi.route.config import RouterConfig
from cogumi.serve.config import ServeConfig
from cogumi.train.config import LoraConfig, TrainConfig

__all__ = ["EMBEDDED_MODEL", "CogumiConfig", "CompressConfig", "CurateConfig", "EvaluateConfig", "LoraConfig",
           "ModelConfig", "ModifiersConfig", "PipelineConfig", "RouterConfig", "RunConfig", "SamplingConfig", "Section",
           "ServeConfig", "TeacherConfig", "TrainConfig", "dump_config", "load_config"]

class CogumiConfig(Section):
    """The root configuration: shared models plus one section per phase."""

    run: RunConfig = Field(default_factory=RunConfig)
    student: ModelConfig = Field(default_factory=ModelConfig)
    judge: ModelConfig = Field(default_factory=ModelConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    compress: CompressConfig = Field(default_factory=CompressConfig)
    modifiers: ModifiersConfig = Field(default_factory=ModifiersConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)

    def section_hash(self, *sections: str) -> str:
        """SHA-256 of the named sections (all when none), stable across key order."""
        data = self.model_dump(mode="json")
        if sections:
            data = {name: data[name] for name in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> CogumiConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: YAML file; its top level must be a mapping of sections.
        overrides: ``dotted.key=value`` strings; values are parsed as YAML scalars.

    Returns:
        The validated root config.

    Raises:
        ConfigError: missing/unparsable file, bad override, unknown key, wrong type.
    """
    source = str(path) if path else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist", source,
                              "pass an existing YAML file, e.g. configs/local.yaml")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{p}:{mark.line + 1}" if mark else str(p)
            raise ConfigError(f"config file is not valid YAML ({getattr(exc, 'problem', exc)})",
                              where, "fix the YAML syntax at that line") from None
        if not isinstance(raw, dict):
            raise ConfigError("the top level of a config must be a mapping of sections",
                              source, "start the file with keys such as 'run:' or 'train:'")
    for item in overrides or []:
        _apply_override(raw, item, source)
    try:
        return CogumiConfig.model_validate(raw)
    except ValidationError as exc:
        text = Path(path).read_text() if path is not None else ""
        where = source + (f" + overrides {overrides}" if overrides else "")
        raise ConfigError(describe_validation_error(exc, text, root=CogumiConfig), where,
                          "correct the key(s) named above; `cogumi config` prints every key with its default") from None


def _apply_override(raw: dict[str, Any], item: str, source: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' is not of the form dotted.key=value",
                          "command line", "write e.g. train.lora.r=32")
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{item}': '{part}' is a value, not a section",
                              f"command line (config {source})", "override a leaf key")
        node = child
    node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""


def describe_validation_error(exc: ValidationError, yaml_text: str = "", what: str = "invalid config",
                              root: type[BaseModel] | None = None) -> str:
    """One line per failed field: its dotted path, the YAML line when known, what was wrong and the value given.

    Args:
        exc: the error.
        yaml_text: the YAML the values came from (for line numbers), if any.
        what: the message's prefix.
        root: the model validated, to list the allowed keys next to an unknown one (None: no list).
    """
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        line = _yaml_line(yaml_text, err["loc"])
        at = f" (line {line})" if line else ""
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"][:-1], root) if root is not None else []
            lines.append(f"unknown key '{loc}'{at}" + (f", allowed here: {', '.join(allowed)}" if allowed else ""))
        else:
            got = err.get("input")
            got_s = "" if isinstance(got, dict) else f", got {got!r}"
            lines.append(f"'{loc}'{at}: {err['msg']}{got_s}")
    return f"{what}: " + "; ".join(lines)


def _yaml_line(text: str, loc: tuple) -> int | None:
    """1-based line of the key at ``loc`` in the YAML ``text`` (None when not in the file)."""
    if not text:
        return None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _allowed_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    """Field names of the section at ``loc`` under ``root`` (best effort, for error messages)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            for c in candidates:  # list[TeacherConfig] etc.
                inner = [a for a in getattr(c, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
                if inner:
                    model = inner[0]
                    break
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def dump_config(cfg: CogumiConfig) -> str:
    """The resolved config as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, width=10_000)
