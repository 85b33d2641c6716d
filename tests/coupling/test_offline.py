"""Offline correction (`run_correct`) and emulator runs (`run_emulate`): one process and under `mpiexec -n 3`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from coupling.config import CorrectConfig, CoupleConfig
from coupling.correct import run_correct
from coupling.emulate import run_emulate
from coupling.forcing import FileForcing, window_starts
from coupling.pairs import pair_conditioning
from icecorr.base.errors import InputError
from tests.mpi_scripts.pairs import make_pair_file
from tests.mpi_scripts.tiny import tiny_corrector
from tests.helpers.mpirun import MPI_ENV, run_mpi
from tests.helpers.paths import MPI_SCRIPTS

VARS = ["sic", "sit", "snt", "siu", "siv"]
JOB = str(MPI_SCRIPTS / "offline_job.py")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return make_pair_file(tmp_path_factory.mktemp("pairs") / "pairs.nc", n_time=6)


def correct(pairs, out, members=3, chunk=2, **opts):
    cfg = CorrectConfig(members=members, chunk_size=chunk, output_options={
        "precision": "float64", "write_forecast": True, "write_correction": True, **opts})
    return xr.load_dataset(run_correct(cfg, pairs, out, comm=None, corrector=tiny_corrector()))


def test_correct_writes_bounded_members_with_forecast_and_correction(pairs, tmp_path):
    ds = correct(pairs, tmp_path / "c.nc")
    src = xr.load_dataset(pairs)
    assert ds.sizes == {"time": 6, "member": 3, "y": 16, "x": 16}
    assert ds["forecast_sic"].dims == ("time", "y", "x")
    np.testing.assert_array_equal(ds["forecast_sit"].values, src["forecast_sit"].values)
    assert float(ds["sic"].min()) >= 0 and float(ds["sic"].max()) <= 1 and float(ds["snt"].min()) >= 0
    assert float(ds["sic"].std("member").max()) > 1e-5  # members differ through their noise
    # time is the valid time: 12 h after the window start
    np.testing.assert_array_equal(ds["time"].values, src["time"].values + np.timedelta64(12, "h"))
    assert ds.attrs["status"] == "complete" and "input time index" in ds.attrs["seeding"]
    # a stub corrector with a known correction: the written corrected and correction fields are recomputed from
    # the input file's forecasts (not from each other)
    from corrector.bounds import THIN_FORECAST_SIC
    from tests.helpers.known_corrector import KnownCorrection, known_correction

    cfg = CorrectConfig(members=2, chunk_size=4, output_options={"write_forecast": True, "write_correction": True,
                                                                  "precision": "float64"})
    known = xr.load_dataset(run_correct(cfg, pairs, tmp_path / "known.nc", comm=None,
                                        corrector=KnownCorrection(tiny_corrector())))
    forecast = {v: src[f"forecast_{v}"].values for v in VARS}
    want = known_correction(forecast)
    iced = forecast["sic"] >= THIN_FORECAST_SIC  # elsewhere the thin-forecast guard and the bounds step in
    assert iced.mean() > 0.5
    for v in VARS:
        for k in range(2):
            np.testing.assert_allclose(known[v].values[:, k][iced], (forecast[v] + want[v])[iced], rtol=1e-6,
                                       atol=1e-12, err_msg=v)
            np.testing.assert_allclose(known[f"correction_{v}"].values[:, k][iced], want[v][iced], rtol=1e-5,
                                       atol=1e-9, err_msg=v)


def test_correct_does_not_depend_on_chunking_or_member_count(pairs, tmp_path):
    a = correct(pairs, tmp_path / "a.nc", members=3, chunk=2)
    b = correct(pairs, tmp_path / "b.nc", members=2, chunk=5)
    for v in VARS:
        np.testing.assert_array_equal(a[v].values[:, :2], b[v].values, err_msg=v)


def test_correct_names_file_and_field_of_missing_input(pairs, tmp_path):
    ds = xr.load_dataset(pairs).drop_vars("uas_t1")
    bad = tmp_path / "bad.nc"
    ds.to_netcdf(bad)
    with pytest.raises(InputError, match=r"bad.nc, field 'uas_t1': missing"):
        correct(bad, tmp_path / "x.nc")
    assert not (tmp_path / "x.nc").exists()


def emulate(pairs, out, restart=None, restart_interval=0, starts=(0, 2), members=3, steps=3):
    cfg = CoupleConfig(members=members, n_steps=steps, start_indices=list(starts), restart_interval=restart_interval,
                       output_options={"precision": "float64"})
    return run_emulate(cfg, pairs, FileForcing(pairs), out, restart=restart, comm=None,
                       corrector=tiny_corrector(mode="emulator"))


def test_emulate_windows_members_and_exact_restart(pairs, tmp_path):
    paths = emulate(pairs, tmp_path / "e.nc", restart_interval=1)
    assert [p.name for p in paths] == ["e_w00000.nc", "e_w00002.nc"]
    full = [xr.load_dataset(p) for p in paths]
    src = xr.load_dataset(pairs)
    for w, start in enumerate((0, 2)):
        assert full[w].sizes == {"time": 4, "member": 3, "y": 16, "x": 16}
        np.testing.assert_array_equal(full[w]["sic"].values[0, 1], src["initial_sic"].values[start])
        assert full[w]["time"].values[0] == src["time"].values[start]
    assert float(full[0]["sic"][-1].std("member").max()) > 1e-5
    # continue from the step-1 restart into new files: identical to the uninterrupted run
    cont = emulate(pairs, tmp_path / "e.nc", restart=tmp_path / "e.restart.step00001.nc")
    for p, ref in zip(cont, full):
        again = xr.load_dataset(p)
        for v in VARS:
            np.testing.assert_array_equal(again[v].values, ref[v].values, err_msg=v)


def test_window_starts_stay_within_runs(pairs, tmp_path):
    ds = xr.load_dataset(pairs)
    ds["run"] = ("time", np.array([0, 0, 0, 1, 1, 1], dtype=np.int32))
    two_runs = tmp_path / "two_runs.nc"
    ds.to_netcdf(two_runs)
    assert window_starts(FileForcing(two_runs), 2) == [0, 3]
    assert window_starts(FileForcing(pairs), 2) == [0, 2, 4]
    assert window_starts(FileForcing(pairs), 2, n_windows=2) == [0, 4]
    with pytest.raises(InputError, match="crosses runs"):
        FileForcing(two_runs).check_window(1, 3)


def test_emulate_rejects_residual_checkpoint_and_short_forcing(pairs, tmp_path):
    cfg = CoupleConfig(members=2, n_steps=2)
    with pytest.raises(InputError, match="'residual' corrector; icecorr emulate needs 'emulator'"):
        run_emulate(cfg, pairs, FileForcing(pairs), tmp_path / "x.nc", comm=None, corrector=tiny_corrector())
    cfg = CoupleConfig(members=2, n_steps=9)
    with pytest.raises(InputError, match=r"pairs.nc, field 'time': a window of 9 steps"):
        run_emulate(cfg, pairs, FileForcing(pairs), tmp_path / "x.nc", comm=None,
                    corrector=tiny_corrector(mode="emulator"))


@pytest.mark.mpi
def test_correct_and_emulate_under_mpi_match_one_process(pairs, tmp_path):
    res = run_mpi(3, [JOB, "both", str(pairs), str(tmp_path / "m.nc"), "--chunk", "1", "--starts", "0", "2"],
                  timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    one = correct(pairs, tmp_path / "c1.nc", members=3, chunk=4)
    par = xr.load_dataset(tmp_path / "m_correct.nc")
    e1 = [xr.load_dataset(p) for p in emulate(pairs, tmp_path / "e1.nc")]
    for v in VARS:
        np.testing.assert_array_equal(par[v].values, one[v].values, err_msg=v)
        for w in (0, 2):
            em = xr.load_dataset(tmp_path / f"m_emulate_w{w:05d}.nc")
            np.testing.assert_array_equal(em[v].values, e1[w // 2][v].values, err_msg=v)


def test_offline_job_script_runs_without_mpiexec(pairs, tmp_path):
    proc = subprocess.run([sys.executable, JOB, "correct", str(pairs), str(tmp_path / "s.nc"), "--no-mpi"],
                          capture_output=True, text=True, timeout=240, env={**os.environ, **MPI_ENV})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert xr.open_dataset(tmp_path / "s.nc").sizes["member"] == 3


def test_pair_conditioning_names_the_file_time_index_of_a_nan(tmp_path):
    """The shared pair-file reader reports the file's own time index, whether it reads a slice or picked windows."""
    field = np.zeros((10, 4, 4))
    field[7, 1, 2] = np.nan
    ds = xr.Dataset({"tas_t0": (("time", "y", "x"), field), "mask": (("y", "x"), np.ones((4, 4)))})

    class Reader:
        conditioning_names = ["tas_t0", "mask"]

    for idx in (slice(4, 9), np.array([2, 7, 9])):
        with pytest.raises(InputError, match=r"f\.nc, field 'tas_t0': NaN/inf at time index 7"):
            pair_conditioning(Reader, ds, tmp_path / "f.nc", idx)
    cond = pair_conditioning(Reader, ds, tmp_path / "f.nc", slice(0, 5))
    assert cond["tas_t0"].shape == (5, 4, 4) and cond["mask"].shape == (4, 4)
