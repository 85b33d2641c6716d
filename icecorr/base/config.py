"""YAML configs with command-line overrides, validated by the typed (pydantic) sections of each package.

Overrides are `key.sub=value` strings; the value is parsed as YAML (so `3`, `1e-3`, `true`, `[1, 2]` work).
Unknown keys are rejected with the full dotted path of the offending key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base of every config section: unknown keys are an error, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def _safe_yaml(text: str, source: str) -> Any:
    try:
        # safe_load: a config file can never construct Python objects or run code
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # one line: the problem and where (a python/... tag lands here: safe_load has no constructor for it)
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of `data` with every `a.b.c=value` override applied."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = _safe_yaml(raw, f"override {item!r}")
    return out


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{loc}'")
        else:
            lines.append(f"{source}: '{loc}': {err['msg']}")
    return "\n".join(lines)


def load_config(schema: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Load `path` (YAML, optional) into `schema`, after applying overrides; raise ConfigError on any problem."""
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
        data = _safe_yaml(text, source) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
    overrides = list(overrides)
    data = apply_overrides(data, overrides)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        if overrides:
            source += " (with overrides " + " ".join(overrides) + ")"
        raise ConfigError(_describe(exc, source)) from None


def dump_config(config: BaseModel) -> str:
    """The fully resolved config as YAML text (saved with every output and checkpoint)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
