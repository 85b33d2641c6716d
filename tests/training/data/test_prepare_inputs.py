"""`icecorr prepare` on inputs shaped like real models' output (issue 16): 6-hourly state files resampled to 12 h,
accumulated fluxes, forcing with other dimension names, a decreasing y axis, the reference's geography in the pair
files, a mask given as 1 = land, x/y in `meters`, and relative paths from the config file's folder (CLI)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.cli import main
from icecorr.inputs.reference import ReferenceData
from training.data.prepare import run_prepare

from tests.training.data.test_prepare import DX, EXAMPLE, FILL, N, TIMES, _config, _land, _rewrite, write_nextsim_files

HALF_DAY = 43200.0


def _both(state) -> xr.Dataset:
    return xr.concat([xr.load_dataset(p) for p in state], "time")


def _write(ds: xr.Dataset, path) -> None:
    ds.to_netcdf(path, encoding={v: {"_FillValue": FILL} for v in ds.data_vars if ds[v].dtype.kind == "f"})


def _six_hourly(state, path) -> xr.Dataset:
    """One 6-hourly state file: the 12 h records as they are, between them the mean of the neighbours, with
    10 cm more ice (so that a snapshot and a mean differ)."""
    raw = _both(state)
    times = pd.date_range(TIMES[0], TIMES[-1], freq="6h")
    out = xr.Dataset(coords={"time": times, "y": raw["y"], "x": raw["x"]})
    for v in raw.data_vars:
        a = raw[v].values.astype(np.float64)
        b = np.empty((len(times), N, N))
        b[0::2] = a
        b[1::2] = 0.5 * (a[:-1] + a[1:]) + (10.0 if v == "sit" else 0.0)
        out[v] = (raw[v].dims, b.astype(np.float32), raw[v].attrs)
    _write(out, path)
    return out


@pytest.fixture()
def files(tmp_path):
    state, forcing = write_nextsim_files(tmp_path)
    return tmp_path, state, forcing


# -------------------------------------------------------------------------------------------- 1. 6-hourly states
def test_six_hourly_state_snapshot_gives_the_12_hourly_pairs(files):
    folder, state, forcing = files
    six = folder / "six_hourly.nc"
    _six_hourly(state, six)
    twelve = run_prepare(_config(state, forcing, **{"prepare.dtype": "float64"}), folder / "twelve")
    snap = run_prepare(_config([six], forcing, **{"prepare.dtype": "float64"}), folder / "snap")
    for a, b in zip(twelve, snap):
        with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
            for v in x.data_vars:
                np.testing.assert_array_equal(x[v].values, y[v].values, err_msg=v)


def test_six_hourly_state_mean_is_the_trapezoidal_mean_over_t_plus_minus_6h(files):
    folder, state, forcing = files
    six = _six_hourly(state, folder / "six_hourly.nc")
    cfg = _config([folder / "six_hourly.nc"], forcing, **{"prepare.time_resample": "mean"})
    data = ReferenceData(cfg.prepare, cfg.grid)
    # 00/12 UTC records with t - 6 h and t + 6 h in the file: all but the first and the last
    np.testing.assert_array_equal(data.times, TIMES[1:-1].values)
    sit = six["sit"].values.astype(np.float64) / 100  # cm -> m
    k = 2                                             # TIMES[3] = record 6 of the 6-hourly file
    hand = 0.25 * sit[5] + 0.5 * sit[6] + 0.25 * sit[7]
    ocean = ~_land()
    np.testing.assert_allclose(data.state["sit"].at(k)[ocean], hand[ocean], rtol=1e-12)
    assert np.abs(hand - sit[6])[ocean].min() > 0.04   # the mean is not the snapshot


@pytest.mark.parametrize("change, message", [
    ("gap", "time spacing must be 12 h, or a regular step that divides 12 h"),
    ("daily", "(record 0 -> 1, 24 h)"),
])
def test_irregular_or_coarse_state_spacing_is_an_error(files, change, message):
    folder, state, forcing = files
    path = folder / "bad.nc"
    six = _six_hourly(state, folder / "six_hourly.nc")
    bad = six.drop_isel(time=5) if change == "gap" else six.isel(time=slice(0, None, 4))
    _write(bad, path)
    cfg = _config([path], forcing)
    with pytest.raises(InputError) as err:
        ReferenceData(cfg.prepare, cfg.grid)
    assert err.value.file == str(path) and err.value.field == "time"
    assert message in str(err.value) and "prepare.time_resample" in str(err.value)


# ---------------------------------------------------------------------------------------- 2. accumulated fluxes
def _accumulated_forcing(forcing, path) -> xr.Dataset:
    """The forcing 6-hourly, shortwave accumulated over each 6 h interval (J m-2, 150 W m-2) and snowfall as metres
    of water accumulated over it (1e-6 kg m-2 s-1 = 1e-9 m s-1)."""
    with xr.open_dataset(forcing) as f:
        times = pd.date_range(f["time"].values[0], f["time"].values[-1], freq="6h")
        out = f.load().reindex(time=times, method="nearest")
    seconds = 6 * 3600.0
    out["sw_in"] = out["sw_in"].copy(data=np.full(out["sw_in"].shape, 150.0 * seconds, np.float32))
    out["sw_in"].attrs["units"] = "J m-2"
    out["snowfall"] = out["snowfall"].copy(data=np.full(out["snowfall"].shape, 1e-9 * seconds, np.float32))
    out["snowfall"].attrs["units"] = "m"
    _write(out, path)
    return out


def test_accumulated_fluxes_become_rates(files):
    folder, state, forcing = files
    path = folder / "era5_like.nc"
    _accumulated_forcing(forcing, path)
    cfg = _config(state, path, **{
        "prepare.forcing.rsds": json.dumps({"name": "sw_in", "units": "J m-2", "accumulated": True}),
        "prepare.forcing.prsn": json.dumps({"name": "snowfall", "units": "m", "accumulated": True})})
    data = ReferenceData(cfg.prepare, cfg.grid)
    f = data.forcing_at(3)
    ocean = ~_land()
    np.testing.assert_allclose(f["rsds"][ocean], 150.0, rtol=1e-6)      # J m-2 / 21600 s
    np.testing.assert_allclose(f["prsn"][ocean], 1e-6, rtol=1e-6)       # m / s × 1000 kg m-3


def test_joules_without_the_accumulated_option_name_it(files):
    folder, state, forcing = files
    path = folder / "era5_like.nc"
    _accumulated_forcing(forcing, path)
    cfg = _config(state, path, **{"prepare.forcing.rsds": json.dumps({"name": "sw_in", "units": "J m-2"})})
    with pytest.raises(InputError) as err:
        ReferenceData(cfg.prepare, cfg.grid)
    assert err.value.file == str(path) and err.value.field == "sw_in"
    assert "cannot convert units 'J m-2'" in str(err.value)
    assert "set prepare.forcing.rsds.accumulated: true" in str(err.value)
    with pytest.raises(Exception, match="applies to forcing fluxes only"):
        _config(state, path, **{"prepare.state.sit": json.dumps({"name": "sit", "units": "cm", "accumulated": True})})


# --------------------------------------------------------------------------------------- 3. forcing dimensions
def test_forcing_files_with_their_own_dimension_names(files):
    folder, state, forcing = files
    path = folder / "forcing_other_dims.nc"
    with xr.open_dataset(forcing) as f:
        _write(f.load().rename({"time": "valid_time", "y": "rlat", "x": "rlon"}), path)
    with pytest.raises(InputError) as err:
        cfg = _config(state, path)
        ReferenceData(cfg.prepare, cfg.grid)
    assert err.value.file == str(path) and "prepare.forcing_dims.time" in str(err.value)
    cfg = _config(state, path, **{"prepare.forcing_dims": json.dumps({"time": "valid_time", "y": "rlat",
                                                                      "x": "rlon"})})
    data = ReferenceData(cfg.prepare, cfg.grid)
    ref = ReferenceData(_config(state, forcing).prepare, cfg.grid)
    for name, a in ref.forcing_at(4).items():
        np.testing.assert_array_equal(data.forcing_at(4)[name], a, err_msg=name)


# --------------------------------------------------------------- 4. decreasing y, 5. geography in the pair files
def _with_geography(ds: xr.Dataset) -> xr.Dataset:
    """`ds` with a polar-stereographic grid mapping and 2-D lat/lon (standard names)."""
    yy, xx = np.meshgrid(ds["y"].values, ds["x"].values, indexing="ij")
    ds = ds.assign_coords(latitude=(("y", "x"), 70.0 + yy / 1000.0, {"standard_name": "latitude",
                                                                       "units": "degrees_north"}),
                          longitude=(("y", "x"), -10.0 + xx / 1000.0, {"standard_name": "longitude",
                                                                          "units": "degrees_east"}))
    ds["crs"] = ((), np.int32(0), {"grid_mapping_name": "polar_stereographic",
                                   "straight_vertical_longitude_from_pole": -45.0,
                                   "latitude_of_projection_origin": 90.0, "standard_parallel": 70.0})
    for v in ("sic", "sit", "sisnthick", "siu", "siv", "damage"):
        ds[v].attrs["grid_mapping"] = "crs"
    return ds


def test_decreasing_y_is_reversed_and_the_geography_is_kept(files):
    folder, state, forcing = files
    flipped = []
    for p in state:
        with xr.open_dataset(p) as ds:
            out = _with_geography(ds.load()).isel(y=slice(None, None, -1))
        flipped.append(folder / f"flipped_{p.name}")
        _write(out, flipped[-1])
    cfg = _config(state, forcing)
    ref = ReferenceData(cfg.prepare, cfg.grid)
    data = ReferenceData(_config(flipped, forcing).prepare, cfg.grid)
    np.testing.assert_array_equal(data.mask, ref.mask)
    for k in (0, 5):
        for v, a in ref.state_at(k).items():   # siv keeps its sign: a component along increasing y
            np.testing.assert_array_equal(data.state_at(k)[v], a, err_msg=v)
    paths = run_prepare(_config(flipped, forcing), folder / "out")
    raw = _with_geography(xr.load_dataset(state[0]))
    for path in [*paths, folder / "out" / "reference.nc"]:
        with xr.open_dataset(path) as ds:
            np.testing.assert_allclose(ds["y"].values, raw["y"].values * 1000.0)   # km -> m, increasing
            assert ds["x"].attrs["standard_name"] == "projection_x_coordinate" and ds["x"].attrs["units"] == "m"
            np.testing.assert_allclose(ds["lat"].values, raw["latitude"].values)
            np.testing.assert_allclose(ds["lon"].values, raw["longitude"].values)
            assert ds["crs"].attrs["grid_mapping_name"] == "polar_stereographic"
            name = "initial_sic" if "initial_sic" in ds else "sic"
            assert ds[name].attrs["grid_mapping"] == "crs" and ds["mask"].attrs["grid_mapping"] == "crs"
    with xr.open_dataset(paths[0]) as pairs, xr.open_dataset(folder / "out" / "reference.nc") as reference:
        ocean = ~_land()
        np.testing.assert_allclose(pairs["reference_siv"].values[0][ocean], reference["siv"].values[1][ocean],
                                   rtol=1e-6)


def test_decreasing_y_with_face_velocities_names_the_option(files):
    folder, state, forcing = files
    path = folder / "flipped.nc"
    _write(_both(state).isel(y=slice(None, None, -1)), path)
    cfg = _config([path], forcing, **{"prepare.velocity_points": "face"})
    with pytest.raises(InputError) as err:
        ReferenceData(cfg.prepare, cfg.grid)
    assert err.value.file == str(path) and err.value.field == "y"
    assert "prepare.velocity_points" in str(err.value)


# ------------------------------------------------------------------------------------------------ 6. land masks
def test_mask_given_as_1_is_land_gets_the_inverted_mask_hint(files):
    folder, state, forcing = files
    land = _land()
    _rewrite(state[0], lambda ds: ds.assign(landmask=(("y", "x"), land.astype(np.int8))))
    cfg = _config(state, forcing, **{"prepare.mask_variable": "landmask"})
    with pytest.raises(InputError) as err:
        ReferenceData(cfg.prepare, cfg.grid)
    assert err.value.file == str(state[0]) and err.value.field == "landmask"
    assert "the mask looks inverted" in str(err.value) and "is it 1 = land?" in str(err.value)
    assert "prepare.mask_variable" in str(err.value)
    # the same mask with CF flag meanings is read right
    flagged = folder / "flagged.nc"
    with xr.open_dataset(state[0]) as ds:
        _write(ds.load().assign(landmask=ds["landmask"].assign_attrs(flag_values=np.array([0, 1], np.int8),
                                                                      flag_meanings="ocean land")), flagged)
    cfg = _config([flagged, state[1]], forcing, **{"prepare.mask_variable": "landmask"})
    data = ReferenceData(cfg.prepare, cfg.grid)
    np.testing.assert_array_equal(data.mask, (~land).astype(np.int8))


# ----------------------------------------------------------------------------------- 7. x/y in any length unit
def test_x_in_meters_gets_the_spacing_check(files):
    folder, state, forcing = files
    for p in state:   # 20 km cells, in metres spelled "meters"
        _rewrite(p, lambda ds: ds.assign_coords(x=("x", (np.arange(N) + 0.5) * 20_000.0, {"units": "meters"}),
                                                y=("y", (np.arange(N) + 0.5) * 20_000.0, {"units": "meters"})))
    with xr.open_dataset(forcing) as f:
        _write(f.load().drop_vars(["x", "y"]), folder / "forcing_no_xy.nc")
    cfg = _config(state, folder / "forcing_no_xy.nc", **{"grid.dx": 25_000.0})
    with pytest.raises(InputError) as err:
        ReferenceData(cfg.prepare, cfg.grid)
    assert err.value.file == str(state[0]) and err.value.field == "x"
    assert "grid spacing 20000 m does not match the model dx = 25000 m (grid.dx; x in 'meters')" in str(err.value)
    cfg = _config(state, folder / "forcing_no_xy.nc", **{"grid.dx": 20_000.0})
    assert ReferenceData(cfg.prepare, cfg.grid).grid.dx == 20_000.0


# ------------------------------------------------------------------------ 8. CLI: paths from the config's folder
def test_cli_takes_relative_paths_from_the_config_folder(files, tmp_path_factory, monkeypatch, capsys):
    folder, state, forcing = files
    cfg = _config(state, forcing)
    text = EXAMPLE.read_text()
    config = folder / "prepare.yaml"
    config.write_text(text)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    splits = json.dumps({k: list(v) for k, v in cfg.prepare.splits.items()})
    rc = main(["prepare", str(config), "--out", str(elsewhere / "out"), f"grid.nx={N}", f"grid.ny={N}",
               f"grid.dx={DX}", f"prepare.state_files={json.dumps([p.name for p in state])}",
               f"prepare.forcing_files={json.dumps([forcing.name])}", f"prepare.splits={splits}"])
    assert rc == 0, capsys.readouterr().err
    assert (elsewhere / "out" / "train.nc").is_file()
    shutil.rmtree(elsewhere / "out")
