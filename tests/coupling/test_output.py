"""CF NetCDF writers: atomic whole-file writes, the appending trajectory writer, and survival of SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

import netCDF4
import numpy as np
import pytest
import xarray as xr

from coupling.output import TrajectoryWriter, open_trajectory
from icecorr.base.files import write_dataset_atomic
from tests.helpers.paths import REPO

T0 = datetime(2000, 10, 1)
VARS = {"sic": {"units": "1", "standard_name": "sea_ice_area_fraction"}, "sit": {"units": "m"}}


def record(i: int, members: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(i)
    return {v: rng.random((members, 4, 5)) for v in VARS}


def test_atomic_write_leaves_no_partial_file(tmp_path):
    ds = xr.Dataset({"a": (("y", "x"), np.ones((2, 3)))})
    out = write_dataset_atomic(ds, tmp_path / "sub" / "a.nc")
    assert xr.load_dataset(out)["a"].sum() == 6 and os.listdir(out.parent) == ["a.nc"]
    bad = xr.Dataset({"a": (("y", "x"), np.ones((2, 3)))}, attrs={"bad": {"nested": "dict"}})
    with pytest.raises(Exception):
        write_dataset_atomic(bad, tmp_path / "b.nc")
    assert sorted(os.listdir(tmp_path)) == ["sub"]  # neither b.nc nor its temp file


def test_trajectory_writer_cf_layout_and_records(tmp_path):
    path = tmp_path / "t.nc"
    with TrajectoryWriter(path, VARS, members=3, ny=4, nx=5, dx=16_000.0, start=T0,
                          global_attrs={"command": "icecorr couple x.yaml", "n": 3}) as w:
        assert xr.open_dataset(path).attrs["status"] == "running"
        for i in range(3):
            w.append(T0 + timedelta(hours=12 * i), i, record(i))
    ds = xr.load_dataset(path)
    assert ds["sic"].dims == ("time", "member", "y", "x") and ds.sizes["time"] == 3
    assert ds.attrs["status"] == "complete" and ds.attrs["Conventions"] == "CF-1.10"
    assert ds.attrs["command"] == "icecorr couple x.yaml" and ds["sic"].attrs["units"] == "1"
    np.testing.assert_array_equal(ds["time"].values, np.array(["2000-10-01T00", "2000-10-01T12", "2000-10-02T00"],
                                                              dtype="datetime64[ns]"))
    np.testing.assert_array_equal(ds["x"].values, (np.arange(5) + 0.5) * 16_000.0)
    for i in range(3):
        np.testing.assert_array_equal(ds["sit"].values[i], record(i)["sit"])
    with netCDF4.Dataset(path) as nc:
        assert nc.dimensions["time"].isunlimited() and nc["time"].calendar == "standard"


def test_trajectory_writer_rejects_wrong_shapes_and_names(tmp_path):
    w = TrajectoryWriter(tmp_path / "t.nc", VARS, members=3, ny=4, nx=5, dx=1.0, start=T0)
    with pytest.raises(ValueError, match=r"variable 'sic' record has shape \(2, 4, 5\), expected \(3, 4, 5\)"):
        w.append(T0, 0, {"sic": np.zeros((2, 4, 5))})
    with pytest.raises(KeyError, match="'snt' was not declared"):
        w.append(T0, 0, {"snt": np.zeros((3, 4, 5))})
    w.close("failed")
    assert xr.open_dataset(tmp_path / "t.nc").attrs["status"] == "failed"


def test_continue_from_keeps_records_bit_for_bit(tmp_path):
    old = tmp_path / "old.nc"
    with TrajectoryWriter(old, VARS, members=3, ny=4, nx=5, dx=1.0, start=T0) as w:
        for i in range(4):
            w.append(T0 + timedelta(hours=12 * i), i, record(i))
    kw = dict(variables=VARS, members=3, ny=4, nx=5, dx=1.0, start=T0)
    with TrajectoryWriter.continue_from(old, 2, old, **kw) as w:   # in place: records 2, 3 are dropped
        assert w.n_records == 2
        w.append(T0 + timedelta(hours=24), 2, record(7))
    ds = xr.load_dataset(old)
    assert list(ds["step"].values) == [0, 1, 2]
    np.testing.assert_array_equal(ds["sic"].values[1], record(1)["sic"])
    np.testing.assert_array_equal(ds["sic"].values[2], record(7)["sic"])


def test_open_trajectory_drops_a_record_without_time(tmp_path):
    path = tmp_path / "t.nc"
    w = TrajectoryWriter(path, VARS, members=3, ny=4, nx=5, dx=1.0, start=T0)
    w.append(T0, 0, record(0))
    w._nc["sic"][1] = record(1)["sic"]  # a record cut off before its time value was written
    w.close("failed")
    assert xr.open_dataset(path).sizes["time"] == 2
    assert open_trajectory(path).sizes["time"] == 1


WRITER_LOOP = """
import sys
from datetime import datetime, timedelta
import numpy as np
from coupling.output import TrajectoryWriter
from tests.helpers.paths import REPO
w = TrajectoryWriter(sys.argv[1], {"sic": {"units": "1"}, "siu": {"units": "m s-1"}}, members=8, ny=64, nx=64,
                     dx=1.0, start=datetime(2000, 1, 1))
rng = np.random.default_rng(0)
i = 0
while True:
    w.append(datetime(2000, 1, 1) + timedelta(hours=12 * i), i, {k: rng.random((8, 64, 64)) for k in ("sic", "siu")})
    i += 1
    print(i, flush=True)
"""


def test_sigkilled_writer_leaves_readable_file_with_every_completed_step(tmp_path):
    """The writer appends as fast as it can, so the kill lands in the middle of a write most of the time."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for trial in range(4):
        path = tmp_path / f"k{trial}.nc"
        proc = subprocess.Popen([sys.executable, "-c", WRITER_LOOP, str(path)], stdout=subprocess.PIPE, text=True,
                                env=env)
        completed = 0
        while completed < 3 + 5 * trial:
            line = proc.stdout.readline()
            assert line, "writer died early"
            completed = int(line)
        time.sleep(0.01 * trial)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        ds = open_trajectory(path)
        assert ds.sizes["time"] >= completed
        assert np.isfinite(ds["sic"].values).all() and np.isfinite(ds["siu"].values).all()
        assert ds.attrs["status"] == "running"
