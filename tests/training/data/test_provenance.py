"""A twin pair file records the coarse physics its forecasts ran (the `physics` section of its `config` attribute);
`pair_file_physics` reads it back, and only where the forecasts are that model's."""
from __future__ import annotations

import pytest
import xarray as xr
import yaml

from fortran_stub.config import CoarsePhysicsConfig
from icecorr.base.errors import InputError
from training.data.config import TwinConfig
from training.data.generate import TWIN_SECTIONS
from training.data.provenance import config_yaml, pair_file_physics, pair_physics_config


def _attrs(**physics) -> dict:
    cfg = TwinConfig.model_validate({"grid": {"nx": 8, "ny": 8, "dx": 16_000.0}, "physics": physics})
    return {"producer": "icecorr generate", "forecast": "coarse", "config": config_yaml(cfg, TWIN_SECTIONS)}


def test_the_physics_of_the_forecasts_round_trips_through_the_attributes(tmp_path):
    attrs = _attrs(p_star=68_750.0)
    physics = pair_file_physics(attrs)
    assert physics == CoarsePhysicsConfig(p_star=68_750.0).model_dump(mode="json")
    path = tmp_path / "pairs.nc"
    xr.Dataset(attrs=attrs).to_netcdf(path)
    assert pair_physics_config(path).p_star == 68_750.0


def test_no_physics_where_the_forecasts_are_not_the_built_in_models(tmp_path):
    assert pair_file_physics({**_attrs(), "producer": "icecorr prepare"}) is None  # a model of your own
    assert pair_file_physics({**_attrs(), "forecast": "persistence"}) is None
    assert pair_file_physics({"producer": "icecorr generate"}) is None  # nothing recorded
    path = tmp_path / "prepared.nc"
    xr.Dataset(attrs={"producer": "icecorr prepare"}).to_netcdf(path)
    assert pair_physics_config(path) == CoarsePhysicsConfig()  # the defaults


def test_an_unreadable_physics_section_names_the_file_and_the_attribute():
    bad = {"producer": "icecorr generate", "config": yaml.safe_dump({"physics": {"p_star": "strong"}})}
    with pytest.raises(InputError, match=r"file pairs.nc, field 'config': its physics section cannot be read"):
        pair_file_physics(bad, "pairs.nc")
