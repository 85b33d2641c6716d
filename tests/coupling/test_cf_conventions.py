"""CF conventions of every NetCDF file icecorr writes, read back with netCDF4: no `_FillValue` on coordinate
variables (time, x, y, member), `member` is a CF `realization`, and mask `flag_values` are numbers of the mask's
type (issue 16, "outputs")."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from coupling.config import CoupleConfig
from coupling.cyclone import run_cyclone
from coupling.emulate import run_emulate
from coupling.forcing import FileForcing
from coupling.output import TrajectoryWriter
from fortran_stub.config import CoarsePhysicsConfig, GridConfig
from icecorr.base.outputs import partial_path
from training.data.io import concat_netcdf_along_time, write_netcdf_atomic
from training.data.pairs import PairBuffer, pair_dataset
from training.evaluation.metrics_file import read_metrics_netcdf, write_metrics_netcdf
from tests.mpi_scripts.pairs import make_pair_file
from tests.mpi_scripts.tiny import tiny_corrector

T0 = datetime(2000, 10, 1)
COORDINATES = ("time", "x", "y", "member")


def coordinate_attrs(path: Path) -> dict[str, list[str]]:
    """The attribute names of each coordinate variable of the file (of those it has)."""
    with netCDF4.Dataset(path) as nc:
        return {name: list(nc[name].ncattrs()) for name in COORDINATES if name in nc.variables}


def assert_cf_coordinates(path: Path, expect: tuple[str, ...]) -> None:
    attrs = coordinate_attrs(path)
    assert sorted(attrs) == sorted(expect), attrs
    for name, names in attrs.items():
        assert "_FillValue" not in names and "missing_value" not in names, (path.name, name, names)
    if "member" in attrs:
        with netCDF4.Dataset(path) as nc:
            assert nc["member"].getncattr("standard_name") == "realization"


def test_trajectory_file_coordinates(tmp_path):
    path = tmp_path / "t.nc"
    with TrajectoryWriter(path, {"sic": {"units": "1"}}, members=2, ny=3, nx=4, dx=1000.0, start=T0) as w:
        for i in range(2):
            w.append(T0 + timedelta(hours=12 * i), i, {"sic": np.full((2, 3, 4), 0.5)})
    assert_cf_coordinates(path, COORDINATES)
    ds = xr.load_dataset(path)  # the times still decode
    assert ds["time"].values[1] == np.datetime64("2000-10-01T12")


def test_partial_trajectory_still_marks_an_incomplete_record(tmp_path):
    """The `.partial` file of a running or killed run keeps a NaN `_FillValue` on time: a record cut off before
    its time value reads as NaT (coupling.output), so only the complete output drops it."""
    path = tmp_path / "t.nc"
    w = TrajectoryWriter(path, {"sic": {"units": "1"}}, members=2, ny=3, nx=4, dx=1000.0, start=T0)
    w.append(T0, 0, {"sic": np.full((2, 3, 4), 0.5)})
    w._nc["sic"][1] = np.full((2, 3, 4), 0.5)
    w.close("failed")
    assert np.isnat(xr.open_dataset(partial_path(path))["time"].values[1])


def test_ensemble_output_coordinates(tmp_path):
    pairs = make_pair_file(tmp_path / "pairs.nc", n_time=4)
    cfg = CoupleConfig(members=2, n_steps=2, start_indices=[0, 1])
    paths = run_emulate(cfg, pairs, FileForcing(pairs), tmp_path / "e.nc", comm=None,
                        corrector=tiny_corrector(mode="emulator"))
    assert len(paths) == 2
    for path in paths:
        assert_cf_coordinates(path, COORDINATES)


def small_pair_dataset(n: int = 3, ny: int = 4, nx: int = 5) -> xr.Dataset:
    buf = PairBuffer(n, ny, nx, forcing_names=("uas",), dtype="float32")
    times = np.array([np.datetime64("2000-10-01T00") + np.timedelta64(12 * k, "h") for k in range(n)])
    mask = np.ones((ny, nx), dtype=np.int8)
    mask[0, 0] = 0
    return pair_dataset(buf, times, 1000.0, mask)


def test_pair_file_coordinates_and_mask_flags(tmp_path):
    ds = small_pair_dataset()
    parts = [write_netcdf_atomic(ds.isel(time=s), tmp_path / f"part{k}.nc", dtype="float32")
             for k, s in enumerate((slice(0, 2), slice(2, 3)))]
    joined = concat_netcdf_along_time(parts, tmp_path / "train.nc")
    for path in (*parts, joined):
        assert_cf_coordinates(path, ("time", "x", "y"))
        with netCDF4.Dataset(path) as nc:
            flags = nc["mask"].getncattr("flag_values")
            assert isinstance(flags, np.ndarray) and flags.dtype == nc["mask"].dtype, (path.name, flags)
            np.testing.assert_array_equal(flags, [0, 1])
            assert nc["mask"].getncattr("flag_meanings") == "land ocean"


def test_metrics_file_coordinates(tmp_path):
    metrics = xr.Dataset(
        {"rmse": (("model", "lead", "time"), np.ones((2, 3, 2)))},
        coords={"model": ["coarse", "diffusion"], "lead": [12.0, 24.0, 36.0],
                "time": np.array(["2000-10-01T00", "2000-10-01T12"], dtype="datetime64[ns]")})
    path = write_metrics_netcdf(metrics, tmp_path / "metrics.nc")
    assert_cf_coordinates(path, ("time",))
    with netCDF4.Dataset(path) as nc:
        for name in ("lead", "model_label"):
            assert "_FillValue" not in nc[name].ncattrs(), name
    xr.testing.assert_equal(read_metrics_netcdf(path), metrics)


def test_cyclone_file_coordinates(tmp_path):
    path = run_cyclone(GridConfig(nx=16, ny=16), CoarsePhysicsConfig(), tmp_path, days=0.5, output_every_hours=12)
    assert_cf_coordinates(path, ("time", "x", "y"))
