"""CF NetCDF writers: atomic whole-file writes, the appending trajectory writer (written under `<name>.partial`,
renamed onto the output only when complete), survival of SIGKILL, and write failures that leave one clear error."""
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
from icecorr.base.outputs import OutputError, partial_path
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
        assert xr.open_dataset(partial_path(path)).attrs["status"] == "running" and not path.exists()
        for i in range(3):
            w.append(T0 + timedelta(hours=12 * i), i, record(i))
    assert not partial_path(path).exists()
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
    w.append(T0, 0, record(0))
    w.close("failed")
    assert xr.open_dataset(partial_path(tmp_path / "t.nc")).attrs["status"] == "failed"
    assert not (tmp_path / "t.nc").exists()


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
    assert xr.open_dataset(partial_path(path)).sizes["time"] == 2
    assert open_trajectory(partial_path(path)).sizes["time"] == 1


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
        assert not path.exists()
        ds = open_trajectory(partial_path(path))
        assert ds.sizes["time"] >= completed
        assert np.isfinite(ds["sic"].values).all() and np.isfinite(ds["siu"].values).all()
        assert ds.attrs["status"] == "running"


# ---------------------------------------------------------------------------------- nothing lost (issue 21)
def complete_file(path, n: int = 3):
    with TrajectoryWriter(path, VARS, members=3, ny=4, nx=5, dx=1.0, start=T0) as w:
        for i in range(n):
            w.append(T0 + timedelta(hours=12 * i), i, record(i))
    return path.read_bytes()


def test_existing_output_survives_a_failed_rerun(tmp_path):
    """Was: the rerun renamed its empty file onto the output at start-up, so a failed rerun left 0 records."""
    path = tmp_path / "t.nc"
    before = complete_file(path)
    w = TrajectoryWriter(path, VARS, members=3, ny=4, nx=5, dx=1.0, start=T0)
    assert path.read_bytes() == before  # untouched while the rerun computes
    w.append(T0, 0, record(9))
    w.close("failed")  # e.g. Ctrl-C
    assert path.read_bytes() == before
    part = xr.load_dataset(partial_path(path))
    assert part.attrs["status"] == "failed" and part.sizes["time"] == 1  # the completed record, for --restart


def test_failed_run_without_records_leaves_nothing(tmp_path):
    w = TrajectoryWriter(tmp_path / "t.nc", VARS, members=3, ny=4, nx=5, dx=1.0, start=T0)
    w.close("failed")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_writer_refuses_an_output_that_is_not_a_regular_file(tmp_path, kind):
    """Was: the file was renamed onto a named pipe / device node at start-up (replacing it), or a raw
    IsADirectoryError after a `<dir>.tmp-PID` was left behind."""
    path = tmp_path / "out.nc"
    os.mkdir(path) if kind == "folder" else os.mkfifo(path)
    with pytest.raises(OutputError, match=r"out.nc: the output exists and is a (folder|named pipe); an output must "
                                          r"be a regular file"):
        TrajectoryWriter(path, VARS, members=3, ny=4, nx=5, dx=1.0, start=T0)
    assert os.listdir(tmp_path) == ["out.nc"]
    assert path.is_dir() if kind == "folder" else stat_is_fifo(path)


def stat_is_fifo(path) -> bool:
    import stat

    return stat.S_ISFIFO(os.lstat(path).st_mode)


def test_continue_from_reads_the_partial_file_of_an_interrupted_run(tmp_path):
    path = tmp_path / "t.nc"
    w = TrajectoryWriter(path, VARS, members=3, ny=4, nx=5, dx=1.0, start=T0)
    for i in range(3):
        w.append(T0 + timedelta(hours=12 * i), i, record(i))
    w.close("failed")  # interrupted: only t.nc.partial exists
    kw = dict(variables=VARS, members=3, ny=4, nx=5, dx=1.0, start=T0)
    with TrajectoryWriter.continue_from(path, 2, path, **kw) as w2:
        assert w2.n_records == 2
        w2.append(T0 + timedelta(hours=24), 2, record(2))
    ds = xr.load_dataset(path)
    assert ds.attrs["status"] == "complete" and list(ds["step"].values) == [0, 1, 2]
    np.testing.assert_array_equal(ds["sit"].values, np.stack([record(i)["sit"] for i in range(3)]))
    assert sorted(os.listdir(tmp_path)) == ["t.nc"]


DISK_FULL = """
import resource, signal, sys
from datetime import datetime, timedelta
import numpy as np
from coupling.output import TrajectoryWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a write beyond the limit fails with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))
w = TrajectoryWriter(sys.argv[1], {"sic": {"units": "1"}}, members=4, ny=32, nx=32, dx=1.0, start=datetime(2000, 1, 1))
status = "failed"
try:
    for i in range(100):
        w.append(datetime(2000, 1, 1) + timedelta(hours=12 * i), i, {"sic": np.ones((4, 32, 32))})
    status = "complete"
finally:
    w.close(status)
"""


def test_full_disk_while_appending_is_one_clear_error_and_leaves_nothing(tmp_path):
    """Was: a netCDF4 traceback, and a close() raising inside `finally` (a segmentation fault in `correct`)."""
    path = tmp_path / "full.nc"
    res = subprocess.run([sys.executable, "-c", DISK_FULL, str(path)], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 1, res.stderr  # an exception, not a signal
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("icecorr.base.outputs.OutputError: file ") and "full.nc.partial: cannot write record" \
        in last and "File too large" in last, res.stderr
    assert os.listdir(tmp_path) == []
