"""`icecorr prepare` writes `<out>/reference.nc`: the reference mapped onto the model grid in model conventions
(units, C-grid faces, thickness per ice area, land as _FillValue, mask, the input's projection x/y, lat/lon and
grid mapping), and `icecorr evaluate` scores a forecast in the user-grid layout (init_time × lead_time × member,
land as fill, 6-hourly leads) against it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.inputs.reference import centre_to_faces
from training.data.prepare import run_prepare
from training.evaluation.evaluate import evaluate

from training.data.config import PrepareRunConfig

from tests.helpers.foreign_model import (FORCING_MAPPING, STATE_MAPPING, ForeignSetup, forecast_mapping,
                                         write_foreign_files)
from tests.training.data.test_prepare import DX, TIMES, _config, _land, write_nextsim_files

NAMES = ["sic", "sit", "snt", "siu", "siv"]


def test_reference_file_holds_the_mapped_reference(tmp_path):
    state, forcing = write_nextsim_files(tmp_path)
    run_prepare(_config(state, forcing, **{"prepare.dtype": "float64"}), tmp_path / "out")
    raw = xr.concat([xr.load_dataset(p) for p in state], "time")
    with xr.open_dataset(tmp_path / "out" / "reference.nc") as ref:
        # every record a window of train (01-01 .. 01-03) or val (01-03 12:00 .. 01-05) starts or ends at
        np.testing.assert_array_equal(ref["time"].values, TIMES[:9].values)
        land = _land()
        assert ref["sic"].encoding["zlib"] and ref["sic"].dtype == np.float32
        assert np.isnan(ref["sic"].values[:, land]).all() and np.isfinite(ref["sic"].values[:, ~land]).all()
        np.testing.assert_array_equal(ref["mask"].values, (~land).astype(np.int8))
        np.testing.assert_allclose(ref["x"].values, (np.arange(16) + 0.5) * DX)   # km in the file, m here
        assert ref["x"].attrs["standard_name"] == "projection_x_coordinate"   # the model plane, as in the pairs
        k = 3
        np.testing.assert_allclose(ref["sic"].values[k][~land], raw["sic"].values[k][~land] / 100, rtol=1e-6)
        np.testing.assert_allclose(ref["sit"].values[k][~land], raw["sit"].values[k][~land] / 100, rtol=1e-6)
        u, v = centre_to_faces(np.nan_to_num(raw["siu"].values[k].astype(np.float64)),
                               np.nan_to_num(raw["siv"].values[k].astype(np.float64)), ~land)
        np.testing.assert_allclose(ref["siu"].values[k][~land], u[~land], atol=1e-7)
        np.testing.assert_allclose(ref["siv"].values[k][~land], v[~land], atol=1e-7)
        assert ref["siu"].attrs["units"] == "m s-1" and "east face" in ref["siu"].attrs["comment"]


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Foreign files (4 daily forecasts) prepared with prepare.forecasts; the out folder."""
    root = tmp_path_factory.mktemp("foreign")
    setup = ForeignSetup(n_inits=4, init_every_hours=24)
    files = write_foreign_files(root, setup)
    cfg = PrepareRunConfig.model_validate({
        "grid": {"nx": setup.nx, "ny": setup.ny, "dx": setup.dx}, "prepare": {
            "state_files": [str(files["reference"])], "forcing_files": [str(files["forcing"])],
            "state": STATE_MAPPING, "forcing": FORCING_MAPPING, "forecasts": forecast_mapping([str(p) for p in files["forecasts"]]),
            "splits": {"train": ["2000-10-05T00:00", "2000-10-06T12:00"],
                       "test": ["2000-10-07T00:00", "2000-10-11T00:00"]}}})
    run_prepare(cfg, root / "out")
    return root, files


def test_reference_file_keeps_the_geography(foreign):
    root, files = foreign
    with xr.open_dataset(root / "out" / "reference.nc") as ref, xr.open_dataset(files["reference"]) as raw:
        mapping = ref["sic"].attrs["grid_mapping"]
        assert ref[mapping].attrs["grid_mapping_name"] == "polar_stereographic"
        assert set(ref["sic"].encoding["coordinates"].split()) == {"lat", "lon"}
        np.testing.assert_allclose(ref["x"].values, raw["x"].values)
        assert ref["y"].attrs["standard_name"] == "projection_y_coordinate"
        np.testing.assert_allclose(ref["lat"].values, raw["latitude"].values)
        np.testing.assert_array_equal(ref["mask"].values, files["ocean"])
        assert "_FillValue" not in ref["time"].encoding or ref["time"].encoding["_FillValue"] is None


def _user_grid_run(ref: xr.Dataset, path, offset: float, fill_ocean: bool = False) -> None:
    """A forecast in the user-grid layout: init_time × lead_time (12..30 h, 6-hourly) × member × y × x, the reference
    plus `offset` at the leads the reference has, land NaN; `fill_ocean` puts a NaN into the ocean at every record."""
    inits = ref["time"].values[[0, 2]]
    leads = pd.to_timedelta(np.arange(12, 31, 6), unit="h")
    land = ref["mask"].values == 0
    data = {}
    for v in NAMES:
        a = np.zeros((2, len(leads), 2, *land.shape))
        for i, t in enumerate(inits):
            for k, lt in enumerate(leads):
                valid = t + lt.to_timedelta64()
                if valid in ref["time"].values:
                    a[i, k] = ref[v].sel(time=valid).values + offset
        a[..., land] = np.nan
        if fill_ocean:
            a[..., int(np.argmax(~land.ravel())) // land.shape[1], int(np.argmax(~land.ravel())) % land.shape[1]] = \
                np.nan
        data[v] = (("init_time", "lead_time", "member", "y", "x"), a)
    xr.Dataset(data, coords={"init_time": inits, "lead_time": leads, "x": ref["x"], "y": ref["y"]}).to_netcdf(path)


def test_evaluate_scores_the_user_grid_layout_against_the_reference_file(foreign, tmp_path):
    root, _ = foreign
    with xr.open_dataset(root / "out" / "reference.nc") as ref:
        _user_grid_run(ref, tmp_path / "a.nc", 0.01)
        _user_grid_run(ref, tmp_path / "b.nc", 0.02)
    with pytest.warns(UserWarning, match="lead"):
        ev = evaluate({"a": tmp_path / "a.nc", "b": tmp_path / "b.nc"}, root / "out" / "reference.nc")
    rmse = ev.metrics["rmse"]
    assert list(rmse["lead"].values) == [12.0, 24.0]      # 18 and 30 h: valid at 06/18 h, not in the reference
    np.testing.assert_allclose(rmse.sel(model="a", variable="sic").values, 0.01, rtol=1e-4)
    np.testing.assert_allclose(rmse.sel(model="b", variable="sit").values, 0.02, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:.*not scored")
def test_evaluate_refuses_fill_values_in_the_ocean(foreign, tmp_path):
    root, _ = foreign
    with xr.open_dataset(root / "out" / "reference.nc") as ref:
        _user_grid_run(ref, tmp_path / "a.nc", 0.01, fill_ocean=True)
    with pytest.raises(InputError, match="ocean in the reference"):
        evaluate({"a": tmp_path / "a.nc"}, root / "out" / "reference.nc")
