"""Reading a run config: YAML files (a run config or a whole MLOps manifest), `--set` overrides, validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from argomlops.config.cluster import CLUSTER_FIELDS, MLOpsSpec
from argomlops.config.errors import ConfigError, error_lines
from argomlops.config.run import RunConfig


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `training.vqvae.epochs=3` into a key path and a YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"--set {text!r}: expected KEY=VALUE, e.g. training.vqvae.epochs=3"])
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def set_path(raw: dict[str, Any], path: list[str], value: Any, what: str) -> None:
    """Set `value` at the key path `path` of `raw` in place (camel or snake keys), making sections on the way.

    Raises:
        ConfigError: a key on the way holds a value, not a section (`what` names the override in the line).
    """
    node = raw
    for part in path[:-1]:
        existing = next((k for k in (part, to_camel(part)) if k in node), part)
        child = node.setdefault(existing, {})
        if not isinstance(child, dict):
            raise ConfigError([f"{what}: {existing} is not a section"])
        node = child
    leaf = next((k for k in (path[-1], to_camel(path[-1])) if k in node), path[-1])
    node[leaf] = value


def apply_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a raw config dict with each dotted path of `values` set to its (already parsed) value.

    What `--set` does with text, for values that are data already: a sweep's trial sets its parameters so.
    """
    result: dict[str, Any] = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for dotted, value in values.items():
        set_path(result, dotted.split("."), yaml.safe_load(yaml.safe_dump(value)), dotted)
    return result


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of a raw config dict with each `a.b.c=value` override applied (camel or snake keys)."""
    result: dict[str, Any] = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for text in overrides:
        path, value = parse_override(text)
        set_path(result, path, value, f"--set {text!r}")
    return result


def load_raw(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; a missing file or bad YAML is a ConfigError."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config ({exc.strerror})"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})"]) from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: a run config is a mapping of sections, got {type(raw).__name__}"])
    # An MLOps manifest can be validated directly: its spec is the config.
    if raw.get("kind") == "MLOps" and isinstance(raw.get("spec"), dict):
        return dict(raw["spec"])
    return raw


def validate_spec(raw: dict[str, Any]) -> RunConfig:
    """A raw dict as a RunConfig, or as an MLOpsSpec when it holds the cluster's part; ConfigError otherwise."""
    cluster_keys = set(CLUSTER_FIELDS) | {to_camel(k) for k in CLUSTER_FIELDS}
    model: type[RunConfig] = MLOpsSpec if cluster_keys & set(raw) else RunConfig
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(error_lines(exc)) from exc


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load, override and validate a run config; raises ConfigError with one line per problem."""
    raw = load_raw(path) if path is not None else {}
    config = validate_spec(apply_overrides(raw, overrides or []))
    return config.run_config() if isinstance(config, MLOpsSpec) else config
