"""`icecorr prepare` from the user's own model forecasts (a CICE-like init_time × lead_time file: other names and
units, cell-mean thickness, centre velocities, 6-hourly leads, land as _FillValue): pair values against hand values,
windows only where the reference exists, one forecast per file, and clear errors naming file and field."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from icecorr.base.errors import InputError
from training.data.prepare import run_prepare
from icecorr.inputs.reference import centre_to_faces

from tests.training.data.test_prepare import FILL, N, TIMES, _config, _land, write_nextsim_files

INITS = TIMES[[0, 2, 4]]                                  # 2018-01-01 00:00, 01-02 00:00, 01-03 00:00
LEADS = pd.to_timedelta(np.arange(0, 42, 6), unit="h")    # 0, 6, …, 36 h


def _cice_like(path: Path, inits=INITS, per_file: bool = False) -> dict:
    """aice (1), hi (cell-mean m), hs (cm), uvel/vvel (cm s-1, cell centres); a known function of init and lead."""
    land = _land()
    yy, xx = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    i = np.arange(len(inits))[:, None, None, None]
    h = (LEADS / pd.Timedelta("1h")).values[None, :, None, None]
    aice = 0.8 + 0.01 * i + 0.002 * h + 0.001 * xx
    fields = {"aice": (aice, "1"), "hi": (aice * (1.2 + 0.01 * h + 0.0 * yy), "m"),
              "hs": (5.0 + 0.1 * h + 0 * xx, "cm"), "uvel": (2.0 + 0.1 * h + 0.1 * yy, "cm s-1"),
              "vvel": (-1.0 + 0.05 * xx + 0 * h, "cm s-1")}
    ds = xr.Dataset(coords={"init_time": inits, "lead_time": LEADS})
    for name, (val, units) in fields.items():
        val = np.broadcast_to(val, (len(inits), len(LEADS), N, N))
        ds[name] = (("init_time", "lead_time", "yc", "xc"), np.where(land, np.nan, val).astype(np.float32),
                    {"units": units})
    enc = {v: {"_FillValue": FILL} for v in ds.data_vars}
    if per_file:
        paths = []
        for k in range(len(inits)):
            p = path.with_name(f"{path.stem}_{k}.nc")
            ds.isel(init_time=k).to_netcdf(p, encoding=enc)   # scalar init_time coordinate
            paths.append(p)
        return {"paths": paths, "fields": fields}
    ds.to_netcdf(path, encoding=enc)
    return {"paths": [path], "fields": fields}


def _forecast_overrides(paths) -> dict:
    mapping = {"sic": {"name": "aice", "units": "1"}, "sit": {"name": "hi", "units": "m"},
               "snt": {"name": "hs", "units": "cm"}, "siu": {"name": "uvel", "units": "cm/s"},
               "siv": {"name": "vvel", "units": "cm s-1"}}
    return {"prepare.forecasts": json.dumps({"files": [str(p) for p in paths], "variables": mapping,
                                             "dims": {"init_time": "init_time", "lead_time": "lead_time",
                                                      "y": "yc", "x": "xc"}, "thickness_is_mean": True})}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    state, forcing = write_nextsim_files(folder)
    return folder, state, forcing


def test_pairs_from_the_users_forecasts(reference, tmp_path):
    _, state, forcing = reference
    made = _cice_like(tmp_path / "cice.nc")
    cfg = _config(state, forcing, **_forecast_overrides(made["paths"]), **{"prepare.dtype": "float64"})
    run_prepare(cfg, tmp_path / "out")
    train = xr.load_dataset(tmp_path / "out" / "train.nc")
    ref = xr.load_dataset(tmp_path / "out" / "val.nc")
    # train: starts in [01-01 00:00, 01-03 00:00 - 12 h]; 6-hourly leads give windows at 06/18 h valid times too,
    # but the reference is 12-hourly, so only 00/12 h windows have a reference
    starts = pd.to_datetime(train["time"].values)
    assert set(starts.hour) == {0, 12} and len(ref["time"]) > 0
    ocean = ~_land()
    # window of init 0 from lead 12 h to 24 h: start 2018-01-01 12:00
    w = int(np.nonzero((starts == TIMES[1]) & (train["run"].values == 0))[0][0])
    def field(name):   # (init, lead, y, x) as written
        return np.broadcast_to(made["fields"][name][0], (len(INITS), len(LEADS), N, N))

    # leads 12 h and 24 h are lead indices 2 and 4
    np.testing.assert_allclose(train["initial_sic"].values[w][ocean], field("aice")[0, 2][ocean], rtol=1e-6)
    np.testing.assert_allclose(train["forecast_sic"].values[w][ocean], field("aice")[0, 4][ocean], rtol=1e-6)
    np.testing.assert_allclose(train["forecast_sit"].values[w][ocean], 1.2 + 0.01 * 24, rtol=1e-6)  # hi / aice
    np.testing.assert_allclose(train["forecast_snt"].values[w][ocean], 0.05 + 0.001 * 24, rtol=1e-6)  # cm -> m
    u, v = 0.01 * field("uvel")[0, 4], 0.01 * field("vvel")[0, 4]
    uf, _ = centre_to_faces(np.where(ocean, u, 0), np.where(ocean, v, 0), ocean)
    np.testing.assert_allclose(train["forecast_siu"].values[w], uf, atol=1e-7)
    sic_ref = xr.concat([xr.load_dataset(p) for p in state], "time")["sic"].sel(time=TIMES[2]).values / 100
    np.testing.assert_allclose(train["reference_sic"].values[w][ocean], sic_ref[ocean], rtol=1e-6)
    np.testing.assert_allclose(train["residual_sic"].values[w], train["reference_sic"].values[w]
                               - train["forecast_sic"].values[w], atol=1e-12)
    assert (train["forecast_sic"].values[:, ~ocean] == 0).all()
    assert "cice.nc" in train.attrs["forecast_files"]


def test_one_forecast_per_file_gives_the_same_pairs(reference, tmp_path):
    _, state, forcing = reference
    (tmp_path / "a").mkdir()
    one = _cice_like(tmp_path / "a" / "cice.nc")
    per = _cice_like(tmp_path / "cice.nc", per_file=True)
    for name, made in (("one", one), ("per", per)):
        cfg = _config(state, forcing, **_forecast_overrides(made["paths"]))
        run_prepare(cfg, tmp_path / name)
    a, b = (xr.load_dataset(tmp_path / n / "train.nc") for n in ("one", "per"))
    np.testing.assert_array_equal(a["forecast_sit"].values, b["forecast_sit"].values)
    np.testing.assert_array_equal(a["run"].values, b["run"].values)


@pytest.mark.parametrize("change, field, message", [
    (lambda ds: ds.drop_vars("hs"), "hs", "missing (mapped to 'snt')"),
    (lambda ds: ds.assign(hs=ds["hs"].assign_attrs(units="m")), "hs", "units attribute 'm' differs"),
    (lambda ds: ds.assign(aice=ds["aice"] * 100), "aice", "outside the plausible range"),
    (lambda ds: ds.assign(aice=ds["aice"].where(ds["xc"] != 7)), "aice", "NaN/fill value(s) inside the ocean"),
    (lambda ds: ds.isel(yc=slice(0, 8)), "aice", "does not match the model grid"),
    (lambda ds: ds.transpose("init_time", "lead_time", "xc", "yc"), "aice", "dimensions"),
])
def test_bad_forecast_files_name_file_and_field(reference, tmp_path, change, field, message):
    _, state, forcing = reference
    made = _cice_like(tmp_path / "cice.nc")
    ds = xr.load_dataset(made["paths"][0])
    change(ds).to_netcdf(tmp_path / "bad.nc")
    cfg = _config(state, forcing, **_forecast_overrides([tmp_path / "bad.nc"]))
    with pytest.raises(InputError) as err:
        run_prepare(cfg, tmp_path / "out")
    assert err.value.field == field and message in str(err.value) and "bad.nc" in str(err.value)
    assert not (tmp_path / "out" / "train.nc").exists()


def test_b_grid_corner_velocities_onto_c_grid_faces():
    from icecorr.inputs.reference import corner_to_faces

    ocean = np.ones((3, 4), bool)
    ocean[2, 3] = False
    u = np.arange(12.0).reshape(3, 4)
    v = 10 + np.arange(12.0).reshape(3, 4)
    uf, vf = corner_to_faces(u, v, ocean)
    assert uf[1, 1] == 0.5 * (u[1, 1] + u[0, 1]) and uf[0, 0] == 0.5 * u[0, 0]   # south-wall corner is 0
    assert vf[1, 2] == 0.5 * (v[1, 2] + v[1, 1]) and vf[1, 0] == 0.5 * v[1, 0]   # west-wall corner is 0
    assert (uf[:, -1] == 0).all() and (vf[-1, :] == 0).all()                     # closed east/north walls
    assert uf[2, 2] == 0 and vf[1, 3] == 0                                       # faces touching land
