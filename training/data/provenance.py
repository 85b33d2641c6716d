"""Provenance of the files `icecorr generate` and `icecorr prepare` write: the package version, the resolved config
as YAML and the global attributes of a pair file."""
from __future__ import annotations

import yaml

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
