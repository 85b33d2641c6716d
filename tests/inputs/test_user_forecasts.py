"""The input side of `icecorr correct` on the user's forecast files: masks (plain, CF flags, inverted), lead times
in plain CF units, the forcing's grid and duplicate initialisations (icecorr.inputs.land, .user_forecasts)."""
from __future__ import annotations

import shutil

import netCDF4
import numpy as np
import pytest
import xarray as xr

from icecorr.base.config import load_config
from icecorr.base.errors import InputError
from icecorr.inputs.land import check_not_inverted, ocean_from_mask_variable
from icecorr.inputs.mapping import UserForecastInputs
from icecorr.inputs.user_forecasts import UserForecasts
from tests.coupling.test_correct_user_forecasts import WRITTEN_H, inputs_config, write_inputs
from tests.helpers.paths import CONFIGS


def test_mask_variable_plain_and_cf_flags():
    raw = np.array([[0, 1], [1, np.nan]])
    np.testing.assert_array_equal(ocean_from_mask_variable("f.nc", xr.DataArray(raw, name="m"), "k"),
                                  [[False, True], [True, False]])
    land_is_one = xr.DataArray(np.array([[0, 1], [1, 0]], np.int8), name="lsm",
                               attrs={"flag_values": np.array([0, 1], np.int8), "flag_meanings": "sea land"})
    np.testing.assert_array_equal(ocean_from_mask_variable("f.nc", land_is_one, "k"), [[True, False], [False, True]])
    only_land = land_is_one.assign_attrs(flag_meanings="other land")
    np.testing.assert_array_equal(ocean_from_mask_variable("f.nc", only_land, "k"), [[True, False], [False, True]])
    with pytest.raises(InputError, match="name neither ocean nor land.*k"):
        ocean_from_mask_variable("f.nc", land_is_one.assign_attrs(flag_meanings="a b"), "k")
    ocean = np.array([[True, False], [True, True]])
    valid = np.array([[False, True], [True, True]])
    with pytest.raises(InputError, match="looks inverted"):
        check_not_inverted("f.nc", "m", ocean, valid, "k")
    check_not_inverted("f.nc", "m", ocean, ocean, "k")


def test_leads_in_plain_hours_are_decoded(tmp_path):
    write_inputs(tmp_path)
    with netCDF4.Dataset(tmp_path / "cice.nc", "a") as nc:   # as most model files store it: no xarray hint
        nc["lead_time"].delncattr("dtype")
    assert xr.open_dataset(tmp_path / "cice.nc")["lead_time"].dtype.kind != "m"
    data = UserForecasts(UserForecastInputs(**inputs_config()), tmp_path)
    assert list(data.leads / np.timedelta64(1, "h")) == WRITTEN_H
    assert len(data.windows) == 2 * len(WRITTEN_H) and data.ocean.sum() == 120 - 4 - 8


def test_forcing_on_another_grid_and_a_repeated_initialisation(tmp_path):
    write_inputs(tmp_path)
    f = xr.load_dataset(tmp_path / "forcing.nc")
    f.assign_coords(xc=f["xc"] + 12.5).to_netcdf(tmp_path / "shifted.nc")
    with pytest.raises(InputError, match="coordinates differ from the forecast files' x") as err:
        UserForecasts(UserForecastInputs(**inputs_config(forcing_files=["shifted.nc"])), tmp_path)
    assert err.value.file.endswith("shifted.nc") and err.value.field == "xc"
    shutil.copy(tmp_path / "cice.nc", tmp_path / "again.nc")
    cfg = inputs_config()
    cfg["forecasts"] = {**cfg["forecasts"], "files": ["cice.nc", "again.nc"]}
    with pytest.raises(InputError, match="initialisation 2018-01-01T00:00 appears in 2 forecasts"):
        UserForecasts(UserForecastInputs(**cfg), tmp_path)


def test_the_example_config_is_valid():
    from icecorr.cli.runconfig import CorrectRunConfig

    cfg = load_config(CorrectRunConfig, CONFIGS / "correct_user_forecasts_example.yaml")
    assert cfg.correct.inputs.forecasts.velocity_points == "corner" and cfg.correct.inputs.mask_variable == "tmask"
