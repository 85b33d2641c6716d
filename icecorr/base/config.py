"""YAML configs with command-line overrides, validated by the typed (pydantic) sections of each package.

Overrides are `key.sub=value` strings; the value is parsed as YAML (so `3`, `1e-3`, `true`, `[1, 2]` work).
Unknown keys are rejected with the full dotted path of the offending key; so are a key given twice in one mapping
(YAML would keep the last silently), a file that is not UTF-8, and a boolean where a number is meant (pydantic's
lax mode would read `members: true` as 1).
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, ValidationInfo, field_validator

T = TypeVar("T", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base of every config section: unknown keys are an error, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """A boolean (or a list holding one) given for a number: refused (True is an int in Python)."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _holds_bool(value):
            leaves = _leaf_types(field.annotation)
            if bool not in leaves and leaves & {int, float}:
                kind = "an integer" if int in leaves else "a number"
                what = "is a boolean" if isinstance(value, bool) else "holds a boolean"
                raise ValueError(f"{str(value).lower()} {what}, not {kind}: give {kind}")
        return value


def _holds_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value))


def _leaf_types(annotation: Any) -> set:
    """The plain types inside an annotation (Optional[int] → {int, NoneType}; list[int] → {list, int})."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    out = {origin} if isinstance(origin, type) else set()
    if not args:
        return {annotation} if isinstance(annotation, type) else out
    for arg in args:
        out |= _leaf_types(arg)
    return out


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def _duplicate_key(node: yaml.Node, path: tuple[str, ...], seen: set[int]) -> str | None:
    """'a.b (line 5; first at line 3)' for the first key given twice in one mapping of the node tree, or None."""
    if id(node) in seen:  # an alias points back to a node already walked (recursive anchors included)
        return None
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                line = key.start_mark.line + 1
                if key.value in first:
                    return f"'{'.'.join((*path, key.value))}' (line {line}; first given at line {first[key.value]})"
                first[key.value] = line
            found = _duplicate_key(value, (*path, str(getattr(key, "value", "?"))), seen)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, (*path, str(i)), seen)
            if found:
                return found
    return None


def _safe_yaml(text: str, source: str) -> Any:
    try:
        # SafeLoader: a config file can never construct Python objects or run code
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            duplicate = _duplicate_key(node, (), set())
            if duplicate:
                raise ConfigError(f"{source}: duplicate key {duplicate}: YAML would keep only the last value "
                                  f"silently; give each key once")
            return loader.construct_document(node)
        finally:
            loader.dispose()
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


def _read_config_text(path: Path) -> str:
    """The config file's text, or a ConfigError saying what the path is (folder, link loop, …) or which byte is not
    UTF-8 (line and column)."""
    from icecorr.base.files import describe_unreadable

    why = describe_unreadable(path)
    if why:
        raise ConfigError(f"{path}: cannot read config: {why}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}, column {column}): "
                          f"save the config as UTF-8") from None


def load_config(schema: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Load `path` (YAML, optional) into `schema`, after applying overrides; raise ConfigError on any problem."""
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        text = _read_config_text(Path(path))
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


def with_defaults(saved: dict, current: BaseModel) -> dict:
    """`saved` (a config stored by an earlier run, as plain data) with every field it lacks and `current`'s model
    defines with a default filled in at that default, recursively, so that a field added since is no difference."""
    out = dict(saved)
    for name, field in type(current).model_fields.items():
        value = getattr(current, name)
        if name not in out and not field.is_required():
            # as plain data, as the saved config holds it (a nested model, a date → their JSON form)
            out[name] = TypeAdapter(field.annotation).dump_python(field.get_default(call_default_factory=True),
                                                                  mode="json")
        elif isinstance(value, BaseModel) and isinstance(out.get(name), dict):
            out[name] = with_defaults(out[name], value)
    return out


def first_difference(stored, current, free: dict[str, set] | None = None, prefix: str = "") -> str | None:
    """The first dotted key where two config trees (plain data) differ, as 'key (stored there, current now)', or None;
    `free`: {dotted section: keys that may differ} (run-time keys of a resume)."""
    if isinstance(stored, dict) and isinstance(current, dict):
        skip = (free or {}).get(prefix.rstrip("."), set())
        for key in sorted(set(stored) | set(current)):
            if key not in skip:
                found = first_difference(stored.get(key), current.get(key), free, f"{prefix}{key}.")
                if found:
                    return found
        return None
    return None if stored == current else f"{prefix.rstrip('.')} ({stored!r} there, {current!r} now)"
