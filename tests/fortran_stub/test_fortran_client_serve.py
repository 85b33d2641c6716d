"""The Fortran route end to end: the standalone Fortran coarse driver (no Python in the physics processes) against
`icecorr serve`, compared with the Python-driven `icecorr couple` run of the same config, corrector, seeds and
members — bit for bit, with the zero corrector and with a tiny diffusion checkpoint; 2 × 2 tiles (equal and
unequal) equal the untiled run; members spread over 2 and 3 physics ranks; handshake mismatches; killed ranks."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess

import numpy as np
import pytest
import xarray as xr

from tests.fortran_stub import fortran_jobs as fj
from tests.helpers.mpirun import MPI_ENV, mpiexec

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(importlib.util.find_spec("coupling.serve") is None,
                                 reason="needs `icecorr serve` (coupling/serve.py, branch wt-proto)")]
UNEQUAL = "tiles_y = 2, tiles_x = 2, row_ends = 5, 16, col_ends = 11, 16"


def python_couple(config, out, tmp):
    """`mpiexec -n 3 icecorr couple` (2 physics ranks + 1 ML rank, all Python)."""
    cmd = [mpiexec(), "-n", "3", *fj.ICECORR, "couple", str(config), f"couple.output={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=fj.TIMEOUT, cwd=str(tmp),
                          env={**os.environ, **MPI_ENV})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return window_files(out)


def fortran_couple(n, kit, config, out, tmp, layout=None):
    args = [str(kit)] + ([fj.overrides(tmp, out.stem, layout)] if layout else [])
    job = fj.mpmd(n, args, fj.serve_command(config, f"couple.output={out}"), tmp)
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-4000:]
    assert job.stdout.count("icecorr driver timing") == n
    return window_files(out)


def window_files(out):
    """The trajectory file of each window (`<stem>_w<start><suffix>`: the config has two windows)."""
    files = sorted(out.parent.glob(f"{out.stem}_w*{out.suffix}"))
    assert len(files) == len(fj.STARTS), files
    return files


def assert_same_data(files_a, files_b):
    for a, b in zip(files_a, files_b, strict=True):
        with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
            assert sorted(x.data_vars) == sorted(y.data_vars)
            for v in x.data_vars:
                assert np.array_equal(x[v].values, y[v].values, equal_nan=True), (a.name, v)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tests.mpi_scripts.tiny import tiny_checkpoint

    tmp = tmp_path_factory.mktemp("fortran_serve")
    ckpt = tiny_checkpoint(tmp / "tiny.pt")
    zero = fj.write_case(tmp, output="zero.nc")
    tiny = fj.write_case(tmp, checkpoint=str(ckpt), output="tiny.nc")
    kit = fj.write_kit(tiny, tmp / "kit")
    return {"tmp": tmp, "zero": zero, "tiny": tiny, "kit": kit}


@pytest.mark.parametrize("which", ["zero", "tiny"])
def test_fortran_run_equals_python_run(runs, which):
    tmp, config = runs["tmp"], runs[which]
    py = python_couple(config, tmp / f"py_{which}.nc", tmp)
    fo = fortran_couple(2, runs["kit"], config, tmp / f"f_{which}.nc", tmp)
    assert_same_data(py, fo)
    if which == "tiny":
        runs["reference"] = fo
        zero = sorted(tmp.glob("f_zero_w*.nc"))
        if zero:  # the corrector did change the state
            with xr.open_dataset(fo[0]) as x, xr.open_dataset(zero[0]) as y:
                assert not np.array_equal(x["sic"].values, y["sic"].values)


@pytest.mark.parametrize("name,n,layout", [("tiles", 4, "tiles_y = 2, tiles_x = 2"), ("unequal", 4, UNEQUAL),
                                           ("three", 3, None)])
def test_tiles_and_rank_layouts_equal_the_untiled_run(runs, name, n, layout):
    if "reference" not in runs:
        pytest.skip("needs test_fortran_run_equals_python_run[tiny]")
    tmp = runs["tmp"]
    out = fortran_couple(n, runs["kit"], runs["tiny"], tmp / f"f_{name}.nc", tmp, layout)
    assert_same_data(runs["reference"], out)


@pytest.mark.parametrize("name,option,what", [("version", "hello_version = 2", "version"),
                                              ("units", "unit_var = 2, unit_override = 12", "unit"),
                                              ("grid", "ny_offset = 1", "grid")])
def test_handshake_mismatch_is_refused_on_both_sides(runs, name, option, what):
    tmp = runs["tmp"]
    out = tmp / f"refused_{name}.nc"
    job = fj.mpmd(2, [str(runs["kit"]), fj.overrides(tmp, name, option)],
                  fj.serve_command(runs["tiny"], f"couple.output={out}"), tmp)
    assert job.returncode != 0
    client_lines = [ln for ln in job.stderr.splitlines() if "refused the start-up" in ln]
    server_lines = [ln for ln in job.stderr.splitlines() if "refused" in ln and "start-up" not in ln]
    assert client_lines and server_lines, job.stderr[-3000:]
    assert what in client_lines[0].lower(), client_lines[0]
    assert not list(tmp.glob(f"{out.stem}*"))


@pytest.mark.parametrize("victim,label,ranks", [("icecorr_coarse_driver", "physics", "[01]"), (" serve ", "ML", "2")])
def test_killed_rank_ends_the_job_within_10_s(runs, victim, label, ranks):
    tmp = runs["tmp"]
    out = tmp / f"killed_{label}.nc"
    job, after_kill = fj.kill_mid_run(2, [str(runs["kit"]), fj.overrides(tmp, f"progress_{label}", "progress = 1")],
                                      fj.serve_command(runs["tiny"], f"couple.output={out}"), tmp, victim,
                                      "step 0 done")
    assert job.returncode != 0
    assert after_kill < 10.0, after_kill
    # mpiexec's line names the killed rank: the Fortran driver's ranks are 0 and 1, the ML rank is 2
    assert re.search(rf"process rank {ranks} .*exited on signal 9", job.stderr), job.stderr[-2000:]
