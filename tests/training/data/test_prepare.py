"""`icecorr prepare` on neXtSIM-style NetCDF written by the test: renames, unit conversions, land mask, checks
that fail with one clear InputError naming file and field, training pairs from the real coarse model, MPI."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.variables import FORCING_VARIABLES, ML_VARIABLES
from icecorr.base.config import load_config
from training.data.config import PrepareRunConfig
from icecorr.base.units import same_units
from training.data.prepare import run_prepare
from icecorr.inputs.reference import ReferenceData
from icecorr.inputs.model_units import model_unit_conversion as unit_conversion

from tests.helpers.mpirun import run_mpi
from tests.helpers.paths import CONFIGS

EXAMPLE = CONFIGS / "prepare_nextsim_example.yaml"
N, DX = 16, 32_000.0
TIMES = pd.date_range("2018-01-01T00:00", periods=9, freq="12h")
FILL = -9999.0


def _land() -> np.ndarray:
    land = np.zeros((N, N), bool)
    land[:4, :5] = True  # a peninsula in the south-west corner
    land[10:12, 12:] = True  # and a strip from the east wall
    return land


def _encoding(ds: xr.Dataset) -> dict:
    return {v: {"dtype": "float32", "_FillValue": FILL} for v in ds.data_vars}


def write_nextsim_files(folder: Path, n_files: int = 2) -> tuple[list[Path], Path]:
    """State in neXtSIM naming/units (sic %, sit cm, sisnthick m, cell-centre velocities, float32 with
    _FillValue on land, x/y in km) split over `n_files` files, and one forcing file (t2m degC, q2m g/kg, currents
    cm/s) covering one extra time before and after."""
    rng = np.random.default_rng(0)
    land = _land()
    yy, xx = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    nt = len(TIMES)
    wave = np.sin(2 * np.pi * (xx[None] + 0.5 * np.arange(nt)[:, None, None]) / N)
    fields = {
        "sic": (92 + 7 * wave, "%"),
        "sit": (150 + 40 * np.cos(2 * np.pi * yy / N)[None] + 10 * wave, "cm"),
        "sisnthick": (0.1 + 0.02 * wave, "m"),
        "siu": (0.05 * np.sin(2 * np.pi * yy / N)[None] * np.ones((nt, 1, 1)), "m/s"),
        "siv": (0.03 * wave, "m/s"),
        "damage": (0.8 + 0.1 * wave, "1"),
    }
    coords = {"time": TIMES, "y": ("y", (np.arange(N) + 0.5) * DX / 1e3, {"units": "km"}),
              "x": ("x", (np.arange(N) + 0.5) * DX / 1e3, {"units": "km"})}
    state = xr.Dataset(coords=coords)
    for name, (val, units) in fields.items():
        val = np.where(land[None], np.nan, val)
        state[name] = (("time", "y", "x"), val.astype(np.float32), {"units": units})
    paths = []
    bounds = np.linspace(0, nt, n_files + 1).astype(int)
    for i in range(n_files):
        part = state.isel(time=slice(bounds[i], bounds[i + 1]))
        p = folder / f"nextsim_{i}.nc"
        part.to_netcdf(p, encoding=_encoding(part))
        paths.append(p)
    ft = pd.date_range(TIMES[0] - pd.Timedelta("12h"), periods=nt + 2, freq="12h")
    shape = (len(ft), N, N)
    f = xr.Dataset(coords={"time": ft, "y": coords["y"], "x": coords["x"]})
    forcing = {
        "u10": (5 + rng.normal(0, 2, shape), "m s-1"), "v10": (-3 + rng.normal(0, 2, shape), "m s-1"),
        "t2m": (-20 + rng.normal(0, 1, shape), "degC"), "q2m": (0.5 + 0.05 * rng.random(shape), "g kg-1"),
        "sw_in": (np.zeros(shape), "W m-2"), "lw_in": (np.full(shape, 170.0), "W/m2"),
        "snowfall": (np.full(shape, 1e-6), "kg m-2 s-1"), "uo": (np.full(shape, 1.0), "cm s-1"),
        "vo": (np.full(shape, -1.0), "cm s-1"),
    }
    for name, (val, units) in forcing.items():
        f[name] = (("time", "y", "x"), val.astype(np.float32), {"units": units})
    fpath = folder / "forcing.nc"
    f.to_netcdf(fpath, encoding=_encoding(f))
    return paths, fpath


def _config(state_files, forcing_file, **overrides) -> PrepareRunConfig:
    """The shipped example config, pointed at the test files and the 16² grid."""
    ov = [f"grid.nx={N}", f"grid.ny={N}", f"grid.dx={DX}",
          f"prepare.state_files={json.dumps([str(p) for p in state_files])}",
          f"prepare.forcing_files={json.dumps([str(forcing_file)])}",
          'prepare.splits={"train": ["2018-01-01T00:00", "2018-01-03T00:00"], '
          '"val": ["2018-01-03T12:00", "2018-01-05T00:00"]}']
    ov += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(PrepareRunConfig, EXAMPLE, ov)


@pytest.fixture(scope="module")
def nextsim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nextsim")
    state, forcing = write_nextsim_files(folder)
    return folder, state, forcing


@pytest.fixture(scope="module")
def prepared(nextsim, tmp_path_factory):
    _, state, forcing = nextsim
    out = tmp_path_factory.mktemp("prepared")
    cfg = _config(state, forcing, **{"prepare.dtype": "float64"})
    paths = run_prepare(cfg, out)
    return cfg, out, paths


def test_units_helpers():
    assert same_units("m/s", "m s-1") and same_units("m s**-1", "m s-1") and same_units("meter second-1", "m/s")
    assert same_units("W/m2", "W m-2") and same_units("W m^-2", "W m-2") and same_units("kg kg-1", "1")
    assert not same_units("cm", "m") and not same_units("bananas", "m")
    assert unit_conversion("%", "1") == (0.01, 0.0)
    assert unit_conversion("cm", "m") == (0.01, 0.0)
    assert unit_conversion("degC", "K") == (1.0, 273.15)
    assert unit_conversion("cm/s", "m s-1") == (0.01, 0.0)
    assert unit_conversion("km/day", "m s-1")[0] == pytest.approx(1000 / 86400)
    assert unit_conversion("bananas", "m") is None and unit_conversion("K", "m") is None
    assert unit_conversion("mm day-1", "kg m-2 s-1")[0] == pytest.approx(1 / 86400)  # water equivalent


def test_pairs_from_nextsim_files(prepared, nextsim):
    cfg, out, paths = prepared
    _, state_files, forcing_file = nextsim
    assert [p.name for p in paths] == ["train.nc", "val.nc"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "reference.nc", "train.nc", "val.nc"]
    land = _land()
    with xr.open_dataset(out / "train.nc") as ds, xr.open_dataset(state_files[0]) as raw, \
            xr.open_dataset(forcing_file) as rf:
        # windows t with t + 12 h inside [2018-01-01T00, 2018-01-03T00]: 4 windows
        assert ds.sizes == {"time": 4, "y": N, "x": N}
        assert str(ds["time"].values[0])[:16] == "2018-01-01T00:00"
        assert (ds["mask"].values == ~land).all()
        assert ds.attrs["producer"] == "icecorr prepare" and "source_files" in ds.attrs
        sic = ds["initial_sic"].values
        ocean = ~land
        # % -> 1 and cm -> m (float32 in the file)
        np.testing.assert_allclose(sic[0][ocean], raw["sic"].values[0][ocean] / 100, rtol=1e-6)
        np.testing.assert_allclose(ds["initial_sit"].values[1][ocean], raw["sit"].values[1][ocean] / 100,
                                   rtol=1e-6)
        assert (sic[:, land] == 0).all() and (ds["initial_sit"].values[:, land] == 0).all()
        # centre -> east face: mean of the two neighbours, 0 on the east wall and on faces touching land
        u_c = raw["siu"].values[0].astype(np.float64)
        j, i = 8, 6
        assert ds["initial_siu"].values[0, j, i] == pytest.approx(0.5 * (u_c[j, i] + u_c[j, i + 1]), rel=1e-6)
        assert (ds["initial_siu"].values[:, :, -1] == 0).all()
        assert (ds["initial_siu"].values[:, 10, 11] == 0).all()  # east face of (10, 11) touches land at (10, 12)
        # forcing: degC -> K, g/kg -> kg/kg, cm/s -> m/s, taken at the window times (the forcing starts 12 h earlier)
        np.testing.assert_allclose(ds["tas_t0"].values[0][ocean], rf["t2m"].values[1][ocean] + 273.15, rtol=1e-6)
        np.testing.assert_allclose(ds["tas_t1"].values[0][ocean], rf["t2m"].values[2][ocean] + 273.15, rtol=1e-6)
        np.testing.assert_allclose(ds["huss_t0"].values[0][ocean], rf["q2m"].values[1][ocean] / 1000, rtol=1e-6)
        assert ds["uo_t0"].values[0, 8, 8] == pytest.approx(0.01)
        for v in ML_VARIABLES:
            res = ds[f"residual_{v}"].values
            np.testing.assert_allclose(res, ds[f"reference_{v}"].values - ds[f"forecast_{v}"].values, atol=1e-12)
            np.testing.assert_array_equal(ds[f"initial_{v}"].values[1:], ds[f"reference_{v}"].values[:-1])
            assert np.isfinite(res).all() and (res[:, land] == 0).all()
        assert np.abs(ds["residual_siu"].values).max() > 0
        assert {f"{f}_t1" for f in FORCING_VARIABLES} <= set(ds.data_vars)
    with xr.open_dataset(out / "val.nc") as val:
        assert str(val["time"].values[0])[:16] == "2018-01-03T12:00" and val.sizes["time"] == 3
        assert (val["run"].values == 1).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ocean_cells"] == int((~land).sum()) and manifest["splits"]["train"]["windows"] == 4
    assert manifest["variables"]["sit"]["source"] == {"name": "sit", "units": "cm"}


def test_forecast_is_the_coarse_model_from_the_reference_state(prepared):
    from coupling.bridge import CoarseModel
    from training.data.prepare import coarse_start
    cfg, out, _ = prepared
    with xr.open_dataset(out / "train.nc") as ds:
        w = 2
        initial = {v: ds[f"initial_{v}"].values[w] for v in ML_VARIABLES}
        f0 = {f: ds[f"{f}_t0"].values[w] for f in FORCING_VARIABLES}
        f1 = {f: ds[f"{f}_t1"].values[w] for f in FORCING_VARIABLES}
        model = CoarseModel(cfg.grid, cfg.physics)
        model.set_state(coarse_start(initial, f0, set(model.get_state().data_vars)))
        model.step(f0, f1)
        fc = model.get_state()
        ocean = ds["mask"].values.astype(bool)
        for v in ML_VARIABLES:
            np.testing.assert_allclose(ds[f"forecast_{v}"].values[w][ocean], fc[v].values[ocean], rtol=1e-12,
                                       atol=1e-14)


def _rewrite(path: Path, fn) -> None:
    with xr.open_dataset(path) as ds:
        ds = fn(ds.load())
    ds.to_netcdf(path, encoding={v: {"_FillValue": FILL} for v in ds.data_vars if ds[v].dtype.kind == "f"})


@pytest.mark.parametrize("case, field, message", [
    ("wrong_units_attr", "sit", "units attribute 'm' differs from the mapping's 'cm'"),
    ("missing_variable", "sisnthick", "missing (mapped to 'snt')"),
    ("nan_in_ocean", "siv", "NaN/fill value(s) inside the ocean mask"),
    ("percent_labelled_as_fraction", "sic", "outside the plausible range"),
    ("time_gap", "time", "time spacing must be 12 h"),
    ("dims_order", "damage", "dimensions ('time', 'x', 'y'), expected ('time', 'y', 'x')"),
    ("grid_spacing", "x", "grid spacing 16000 m does not match the model dx = 32000 m"),
    ("unknown_units", "uo", "cannot convert units 'bananas s-1'"),
])
def test_bad_input_names_file_and_field(tmp_path, case, field, message):
    state, forcing = write_nextsim_files(tmp_path)
    overrides = {}
    bad_file = state[1]
    if case == "wrong_units_attr":
        _rewrite(state[1], lambda ds: ds.assign(sit=ds["sit"].assign_attrs(units="m")))
    elif case == "missing_variable":
        _rewrite(state[1], lambda ds: ds.drop_vars("sisnthick"))
    elif case == "nan_in_ocean":
        def poke(ds):
            v = ds["siv"].values.copy()
            v[2, 8, 8] = np.nan
            return ds.assign(siv=(ds["siv"].dims, v, ds["siv"].attrs))
        _rewrite(state[1], poke)
    elif case == "percent_labelled_as_fraction":
        overrides["prepare.state.sic.units"] = "1"
        for p in state:
            _rewrite(p, lambda ds: ds.assign(sic=ds["sic"].assign_attrs(units="1")))
        bad_file = state[0]
    elif case == "time_gap":
        _rewrite(state[1], lambda ds: ds.isel(time=slice(1, None)))
    elif case == "dims_order":
        _rewrite(state[1], lambda ds: ds.assign(damage=ds["damage"].transpose("time", "x", "y")))
    elif case == "grid_spacing":
        overrides.update({"grid.nx": N, "grid.dx": DX})
        for p in state:
            _rewrite(p, lambda ds: ds.assign_coords(x=("x", ds["x"].values / 2, {"units": "km"})))
        bad_file = state[0]
    elif case == "unknown_units":
        overrides["prepare.forcing.uo.units"] = "bananas s-1"
        _rewrite(forcing, lambda ds: ds.assign(uo=ds["uo"].assign_attrs(units="bananas s-1")))
        bad_file = forcing
    cfg = _config(state, forcing, **overrides)
    with pytest.raises(InputError) as err:
        run_prepare(cfg, tmp_path / "out")
    assert err.value.field == field, str(err.value)
    assert err.value.file == str(bad_file), str(err.value)
    assert message in str(err.value)
    assert not (tmp_path / "out" / "train.nc").exists()


def test_wrong_grid_and_missing_mapping(nextsim, tmp_path):
    _, state, forcing = nextsim
    cfg = _config(state, forcing, **{"grid.nx": 20})
    with pytest.raises(InputError, match=r"grid \(y, x\) = \(16, 16\) does not match the model grid"):
        ReferenceData(cfg.prepare, cfg.grid)
    cfg = _config(state, forcing)
    forcing_map = dict(cfg.prepare.forcing)
    forcing_map.pop("huss")
    bad = cfg.prepare.model_copy(update={"forcing": forcing_map})
    with pytest.raises(InputError, match="mapping lacks forcing variable"):
        ReferenceData(bad, cfg.grid)
    with pytest.raises(Exception, match="state mapping lacks"):
        _config(state, forcing, **{"prepare.state": '{"sic": {"name": "sic", "units": "%"}}'})


@pytest.mark.mpi
def test_mpi_two_ranks_identical_to_serial(prepared, tmp_path):
    cfg, serial_dir, _ = prepared
    script = tmp_path / "prep_mpi.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from mpi4py import MPI
        from training.data.config import PrepareRunConfig
        from training.data.prepare import run_prepare
        cfg = PrepareRunConfig.model_validate_json({cfg.model_dump_json()!r})
        run_prepare(cfg, sys.argv[1], comm=MPI.COMM_WORLD)
    """))
    res = run_mpi(2, [str(script), str(tmp_path / "out")], timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("train.nc", "val.nc"):
        with xr.open_dataset(serial_dir / name) as a, xr.open_dataset(tmp_path / "out" / name) as b:
            xr.testing.assert_identical(a.load(), b.load())


def test_mean_thickness_option_and_forcing_coverage(nextsim, tmp_path):
    _, state, forcing = nextsim
    land = _land()
    cfg = _config(state, forcing, **{"prepare.thickness_is_mean": "true"})
    data = ReferenceData(cfg.prepare, cfg.grid)
    s = data.state_at(3)
    with xr.open_dataset(state[0]) as raw:
        expected = raw["sit"].values[3].astype(np.float64) / 100 / (raw["sic"].values[3].astype(np.float64) / 100)
    np.testing.assert_allclose(s["sit"][~land], expected[~land], rtol=1e-12)
    # forcing that stops before the last state time
    with xr.open_dataset(forcing) as f:
        short = f.isel(time=slice(0, -3)).load()
    short_path = tmp_path / "short_forcing.nc"
    short.to_netcdf(short_path)
    cfg = _config(state, short_path)
    with pytest.raises(InputError, match="no forcing at 2 state time"):
        ReferenceData(cfg.prepare, cfg.grid)


@pytest.mark.mpi
def test_mpi_bad_record_fails_every_rank_with_the_same_error(tmp_path):
    state, forcing = write_nextsim_files(tmp_path)

    def poke(ds):  # a NaN in the ocean in the last record: only the last rank checks it
        v = ds["sit"].values.copy()
        v[-1, 8, 8] = np.nan
        return ds.assign(sit=(ds["sit"].dims, v, ds["sit"].attrs))
    _rewrite(state[1], poke)
    cfg = _config(state, forcing)
    script = tmp_path / "prep_bad.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from mpi4py import MPI
        from icecorr.base.errors import InputError
        from training.data.config import PrepareRunConfig
        from training.data.prepare import run_prepare
        cfg = PrepareRunConfig.model_validate_json({cfg.model_dump_json()!r})
        try:
            run_prepare(cfg, sys.argv[1], comm=MPI.COMM_WORLD)
        except InputError as exc:
            # one write per line: print() writes the text and the newline separately, and mpiexec's output
            # forwarding could put the other rank's line in between
            sys.stdout.write(f"rank {{MPI.COMM_WORLD.rank}}: {{exc}}\\n")
            sys.stdout.flush()
            MPI.COMM_WORLD.Barrier()
            sys.exit(3)
    """))
    res = run_mpi(2, [str(script), str(tmp_path / "out")], timeout=240)
    assert res.returncode != 0
    lines = sorted(line for line in res.stdout.splitlines() if line.startswith("rank"))
    assert len(lines) == 2, res.stdout + res.stderr[-2000:]
    for line in lines:
        assert f"file {state[1]}, field 'sit'" in line and "inside the ocean mask" in line
