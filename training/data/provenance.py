"""Provenance of the files `icecorr generate` and `icecorr prepare` write: the package version, the resolved config
as YAML and the global attributes of a pair file; and back: the coarse physics a twin pair file's forecasts ran."""
from __future__ import annotations

import json
from typing import Mapping

import yaml

from fortran_stub.config import CoarsePhysicsConfig
from icecorr.base.errors import InputError
from icecorr.base.version import package_version


def config_yaml(cfg, sections: tuple[str, ...]) -> str:
    """The resolved config as YAML: the whole object if it is one pydantic model, else the named sections."""
    if hasattr(cfg, "model_dump"):
        return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    data = {k: getattr(cfg, k).model_dump(mode="json") for k in sections
            if hasattr(getattr(cfg, k, None), "model_dump")}
    return yaml.safe_dump(data, sort_keys=False)


def pair_file_attrs(cfg, split: str, producer: str, sections: tuple[str, ...]) -> dict[str, object]:
    """Global attributes of a pair file of `split`: conventions, title, version, producer, the config `sections`
    as YAML, the grid spacing (m) and the split."""
    return {
        "Conventions": "CF-1.10",
        "title": f"icecorr twin-experiment training pairs ({split})",
        "icecorr_version": package_version(),
        "producer": producer,
        "config": config_yaml(cfg, sections),
        "grid_dx": float(cfg.grid.dx),
        "split": split,
    }


def pair_file_physics(attrs: Mapping[str, object], path=None) -> dict | None:
    """The built-in coarse model's physics (`CoarsePhysicsConfig` fields) whose 12 h forecasts a twin pair file
    holds, from its `config` attribute; None for a file whose forecasts are not that model's (prepared from a
    model of your own, persistence forecasts, or no config recorded). InputError naming `path` and the
    attribute if the recorded section is not a valid physics config."""
    if attrs.get("producer") != "icecorr generate" or attrs.get("forecast", "coarse") != "coarse":
        return None
    try:
        section = (yaml.safe_load(str(attrs.get("config", ""))) or {}).get("physics")
        return None if section is None else CoarsePhysicsConfig.model_validate(section).model_dump(mode="json")
    except (yaml.YAMLError, AttributeError, ValueError) as exc:
        raise InputError(str(path), "config", f"its physics section cannot be read: {exc}") from None


def physics_of(attrs: Mapping[str, object], path=None) -> CoarsePhysicsConfig:
    """The coarse physics a pair file with global attributes `attrs` recorded (`pair_file_physics`), else the
    defaults: the physics to run the built-in model with beside that file (drift windows, parameter scans, long
    runs)."""
    return CoarsePhysicsConfig.model_validate(pair_file_physics(attrs, path) or {})


def pair_physics_config(path) -> CoarsePhysicsConfig:
    """`physics_of` the pair file at `path`."""
    from icecorr.base.files import open_netcdf

    with open_netcdf(path, "pair file") as ds:
        return physics_of(ds.attrs, path)


def run_physics(pairs, correctors: Mapping[str, object] | None = None) -> tuple[CoarsePhysicsConfig, str]:
    """The physics to run the built-in coarse model with beside the pair file `pairs` and the residual
    `correctors` ({label: Corrector}), and where it came from: the one the correctors learned (their
    `coarse_physics`; ValueError if they differ), else the one the pair file's forecasts ran, else the defaults."""
    learned = {label: c.coarse_physics for label, c in (correctors or {}).items()
               if getattr(c, "coarse_physics", None)}
    if len({json.dumps(p, sort_keys=True) for p in learned.values()}) > 1:
        raise ValueError(f"the correctors learned the residuals of different coarse physics: {sorted(learned)}")
    if learned:
        return CoarsePhysicsConfig.model_validate(next(iter(learned.values()))), "the correctors' training pairs"
    return pair_physics_config(pairs), f"{pairs} (or the defaults if it records none)"
