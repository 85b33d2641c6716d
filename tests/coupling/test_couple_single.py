"""Coupled runs in one process (no mpiexec): the same engine as the MPI runs, with the real CoarseModel."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from corrector.inference import Corrector
from coupling.bridge import CoarseModel
from fortran_stub.config import CoarsePhysicsConfig
from coupling.config import CoupleConfig
from coupling.couple import run_couple
from coupling.handshake import HandshakeError
from icecorr.base.errors import InputError
from tests.mpi_scripts import case
from tests.mpi_scripts.tiny import tiny_corrector

VARS = ["sic", "sit", "snt", "siu", "siv"]
FORCING = case.forcing(16, 12)


def couple(tmp_path, name, corrector, restart=None, physics=None, **cfg):
    # float64 on disk: the zero-corrector runs are compared bit for bit with in-memory states
    cfg = CoupleConfig(**{"members": 2, "n_steps": 2, "output_options": {"precision": "float64"}, **cfg})
    return run_couple(cfg, case.initial_state(), FORCING, tmp_path / f"{name}.nc", restart=restart, comm=None,
                      grid=case.grid(), corrector=corrector, physics=physics)


def uncoupled(start: int, steps: int) -> dict[str, np.ndarray]:
    model = CoarseModel(case.grid())
    model.set_state(case.initial_state())
    traj = [model.get_state()]
    for k in range(steps):
        model.step(*FORCING.pair(start + k))
        traj.append(model.get_state())
    return {v: np.stack([t[v].values for t in traj]) for v in VARS}


def test_zero_corrector_windows_reproduce_uncoupled_runs(tmp_path):
    paths = couple(tmp_path, "z", Corrector.zero(grid={"ny": 16, "nx": 16}), start_indices=[0, 3])
    assert [p.name for p in paths] == ["z_w00000.nc", "z_w00003.nc"]
    for path, start in zip(paths, (0, 3)):
        ds = xr.load_dataset(path)
        ref = uncoupled(start, 2)
        for v in VARS:
            for k in range(2):
                np.testing.assert_array_equal(ds[v].values[:, k], ref[v], err_msg=f"{v} window {start}")
        assert ds["time"].values[0] == np.datetime64("2000-10-01T00") + np.timedelta64(12 * start, "h")


def test_restart_in_one_process_is_exact(tmp_path):
    full = couple(tmp_path, "r", tiny_corrector(), n_steps=3, restart_interval=1)[0]
    ref = xr.load_dataset(full)
    again = couple(tmp_path, "r2", tiny_corrector(), n_steps=3, restart=tmp_path / "r.restart.step00002.nc")[0]
    ds = xr.load_dataset(again)
    assert ds.sizes["time"] == 4
    for v in VARS:
        np.testing.assert_array_equal(ds[v].values, ref[v].values, err_msg=v)
    assert float(ref["sic"][-1].std("member").max()) > 1e-5   # the noise separates the members
    # without the old output the continued file starts at the restart state
    (tmp_path / "r.nc").unlink()
    part = couple(tmp_path, "r3", tiny_corrector(), n_steps=3, restart=tmp_path / "r.restart.step00002.nc")[0]
    ds = xr.load_dataset(part)
    assert list(ds["step"].values) == [2, 3]
    for v in VARS:  # record 0 is the model state (h = V/A re-derived: rounding), the next one is exact
        np.testing.assert_allclose(ds[v].values[0], ref[v].values[2], rtol=1e-12, atol=1e-15, err_msg=v)
        np.testing.assert_array_equal(ds[v].values[1], ref[v].values[3], err_msg=v)


def test_interrupted_run_keeps_the_old_output_and_restarts_from_its_partial_file(tmp_path):
    """A run that fails at step 3 leaves the previous complete output untouched and its own records in
    `<name>.partial`; `--restart` onto the same output continues from that partial file, bit for bit (issue 21:
    the output used to be replaced at start-up, and a restart read the records from the output path only)."""
    from icecorr.base.outputs import partial_path

    ref = xr.load_dataset(couple(tmp_path, "ref", tiny_corrector(), n_steps=3)[0])
    out = tmp_path / "r.nc"
    out.write_bytes(b"an earlier complete output")
    with pytest.raises(RuntimeError, match="injected failure"):  # sampling call 2 = step 3 (call 0: step 1)
        couple(tmp_path, "r", case.FaultyCorrector(tiny_corrector(), "raise", 2), n_steps=3, restart_interval=1)
    assert out.read_bytes() == b"an earlier complete output"
    part = xr.load_dataset(partial_path(out))
    assert part.attrs["status"] == "failed" and list(part["step"].values) == [0, 1, 2]
    out.unlink()
    cont = couple(tmp_path, "r", tiny_corrector(), n_steps=3, restart=tmp_path / "r.restart.step00002.nc")[0]
    ds = xr.load_dataset(cont)
    assert ds.attrs["status"] == "complete" and list(ds["step"].values) == [0, 1, 2, 3]
    for v in VARS:
        np.testing.assert_array_equal(ds[v].values, ref[v].values, err_msg=v)
    assert not partial_path(out).exists()


def test_initial_perturbation_is_bounded_and_per_member(tmp_path):
    a = xr.load_dataset(couple(tmp_path, "p3", tiny_corrector(), members=3, n_steps=1, initial_perturbation=0.05)[0])
    b = xr.load_dataset(couple(tmp_path, "p2", tiny_corrector(), members=2, n_steps=1, initial_perturbation=0.05)[0])
    init = case.initial_state()
    r0 = a.isel(time=0)
    assert float(abs(r0["sic"] - init["sic"]).max()) > 0.01
    assert float(r0["sic"].min()) >= 0 and float(r0["sic"].max()) <= 1 and float(r0["sit"].min()) >= 0
    np.testing.assert_array_equal(r0["sic"].values[:, init["sic"] == 0], 0.0)  # open water stays open
    np.testing.assert_array_equal(r0["siu"].values, 0.0)                       # velocities unperturbed
    assert not np.array_equal(r0["sic"].values[0], r0["sic"].values[1])
    for v in VARS:
        np.testing.assert_array_equal(a[v].values[:, :2], b[v].values, err_msg=v)


def test_restart_must_continue_the_same_run(tmp_path):
    couple(tmp_path, "s", tiny_corrector(), restart_interval=1)
    with pytest.raises(InputError, match=r"s.restart.step00001.nc, field 'members': restart has 2 but this run asks "
                                         r"for 3"):
        couple(tmp_path, "s2", tiny_corrector(), members=3, restart=tmp_path / "s.restart.step00001.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(InputError, match="bad.nc: not a readable NetCDF restart file"):
        couple(tmp_path, "s3", tiny_corrector(), restart=bad)


def test_handshake_rejects_grid_and_mode_mismatch(tmp_path):
    with pytest.raises(HandshakeError, match=r"grid \(ny, nx\)=\(16, 16\) but the checkpoint was trained on \(32, 32\)"):
        couple(tmp_path, "g", Corrector.zero(grid={"ny": 32, "nx": 32}))
    with pytest.raises(InputError, match="'emulator' corrector; icecorr couple needs 'residual'"):
        couple(tmp_path, "m", Corrector.zero(grid={"ny": 16, "nx": 16}, mode="emulator"))


def test_a_corrector_runs_only_on_the_coarse_physics_whose_residual_it_learned(tmp_path):
    """The checkpoint records the physics of its training pairs (coarse_physics); a run of the built-in model with
    another P* is refused before any output, naming the checkpoint and the field; the same physics runs."""
    tuned = CoarsePhysicsConfig(p_star=2.5 * CoarsePhysicsConfig().p_star)
    corrector = tiny_corrector()
    corrector.coarse_physics = tuned.model_dump(mode="json")
    with pytest.raises(InputError, match=r"field 'physics.p_star': the corrector learned the residual of the coarse "
                                         r"model with p_star = 68750.0, but this run's physics has 27500.0"):
        couple(tmp_path, "hibler", corrector)
    assert not list(tmp_path.glob("hibler*"))
    assert len(couple(tmp_path, "tuned", corrector, physics=tuned)) == 1
    corrector.coarse_physics = None  # unknown (pairs of a model of your own): not checked
    assert len(couple(tmp_path, "unknown", corrector)) == 1


def test_coupled_conditioning_counts_steps_since_the_start():
    """A coupled run's `drift_steps` channel is the step index: the initial state of step k has run k steps."""
    from corrector.fields import build_conditioning

    initial = np.zeros((2, 5, 4, 3))
    f = {"uas": np.zeros((2, 4, 3))}
    cond = build_conditioning(["initial_sit", "uas_t0", "drift_steps", "mask"], ["sic", "sit", "snt", "siu", "siv"],
                              initial, None, f, f, None, drift_steps=7)
    assert cond["drift_steps"].shape == (2, 4, 3) and (cond["drift_steps"] == 7).all()
    assert (build_conditioning(["drift_steps"], ["sic"], initial[:, :1], None, f, f, None)["drift_steps"] == 0).all()
