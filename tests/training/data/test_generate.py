"""Twin-experiment generation with the real coarse (mEVP-VP) and truth (BBM) models on a 16² coarse grid."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import xarray as xr

from icecorr.base.variables import FORCING_VARIABLES, ML_VARIABLES
from fortran_stub.config import GridConfig
from training.data.coarsegrain import coarsen_u, coarsen_v
from training.data.config import GenerateConfig, TwinConfig
from training.data.forcing import SyntheticForcing
from training.data import generate as generate_module
from training.data.generate import (coarse_grained, initial_truth_state, plan_runs, run_fingerprint, run_generate,
                                     simulate_run)

from tests.helpers.mpirun import run_mpi

GRID = {"nx": 16, "ny": 16, "dx": 32_000.0}
GEN = {"run_days": 2.0, "spinup_days": 0.5, "seeds": {"train": [11], "val": [12], "test": []}}


def _config(**generate) -> TwinConfig:
    return TwinConfig.model_validate({"grid": GRID, "generate": {**GEN, **generate}})


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generate")
    cfg = _config()
    paths = run_generate(cfg, out, progress=False)
    return cfg, out, paths


def test_files_variables_and_metadata(generated):
    cfg, out, paths = generated
    assert [p.name for p in paths] == ["train.nc", "val.nc"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.nc", "val.nc"]  # no parts, no tmp
    with xr.open_dataset(out / "train.nc") as ds:
        expected = {f"{p}_{v}" for p in ("initial", "forecast", "reference", "residual") for v in ML_VARIABLES}
        expected |= {"initial_damage", "reference_damage", "mask", "run", "run_seed"}
        expected |= {"reference_siu_mean12h", "reference_siv_mean12h"}
        expected |= {f"{f}_{s}" for f in FORCING_VARIABLES for s in ("t0", "t1")}
        assert set(ds.data_vars) == expected
        assert ds.sizes == {"time": 4, "y": 16, "x": 16}
        assert ds["initial_sit"].dims == ("time", "y", "x")
        assert ds["residual_siu"].attrs["units"] == "m s-1" and ds["reference_sic"].attrs["units"] == "1"
        assert ds["tas_t1"].attrs["units"] == "K"
        assert ds.attrs["producer"] == "icecorr generate" and ds.attrs["grid_dx"] == 32_000.0
        assert "icecorr_version" in ds.attrs and "generate:" in ds.attrs["config"]
        assert (np.diff(ds["time"].values) == np.timedelta64(12, "h")).all()
        assert ds["time"].encoding["calendar"] == "standard"
        assert ds["initial_sic"].encoding["chunksizes"][0] <= cfg.generate.chunk_time
        assert (ds["mask"].values == 1).all() and (ds["run"].values == 0).all()
        assert ds["initial_sic"].dtype == np.float32
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["seeds"] == [11] and manifest["splits"]["val"]["seeds"] == [12]
    assert manifest["grid"]["nx"] == 16 and manifest["grid"]["refinement"] == 2
    assert manifest["variables"]["residual_sit"]["units"] == "m"
    assert manifest["config"]["generate"]["run_days"] == 2.0
    stats = manifest["statistics"]["train"]["residual"]
    assert set(stats) == set(ML_VARIABLES) and all(np.isfinite(stats[v]["std"]) for v in stats)


def test_pairs_are_consistent(generated):
    _, out, _ = generated
    with xr.open_dataset(out / "train.nc") as ds:
        for v in ML_VARIABLES:
            ref, fc, res = (ds[f"{p}_{v}"].values.astype(np.float64) for p in ("reference", "forecast", "residual"))
            np.testing.assert_allclose(res, ref - fc, atol=1e-6 * max(1.0, np.abs(ref).max()))
            # consecutive windows: the reference at t+12h is the next window's initial state (the truth trajectory)
            np.testing.assert_array_equal(ds[f"initial_{v}"].values[1:], ds[f"reference_{v}"].values[:-1])
            assert np.abs(res).max() > 0, f"residual_{v} is identically zero: coarse and truth cannot be equal"
        for f in FORCING_VARIABLES:
            np.testing.assert_array_equal(ds[f"{f}_t0"].values[1:], ds[f"{f}_t1"].values[:-1])
        np.testing.assert_array_equal(ds["initial_damage"].values[1:], ds["reference_damage"].values[:-1])
        assert (ds["initial_siu"].values[:, :, -1] == 0).all()  # closed east wall
        assert (ds["initial_siv"].values[:, -1, :] == 0).all()  # closed north wall
        sic = ds["reference_sic"].values
        assert sic.min() >= 0 and sic.max() <= 1 and ds["reference_sit"].values.min() >= 0
        assert ds["initial_damage"].values.min() < 1.0  # the BBM truth has damaged ice after spin-up


def test_reference_is_the_coarse_grained_truth(generated):
    """Re-run the truth by hand: the first two windows' reference is C(truth) at the matching times."""
    from coupling.truth import TruthModel
    cfg, out, _ = generated
    run = plan_runs(cfg.generate)[1]  # the validation run (seed 12, second calendar year)
    fine = cfg.grid.refined(2)
    gen = cfg.generate
    forcing = SyntheticForcing(cfg.forcing, fine, run.start, gen.n_spinup + 3, run.seed)
    truth = TruthModel(fine, cfg.truth, run.seed)
    truth.set_state(initial_truth_state(gen.initial, fine, run.seed))
    for k in range(gen.n_spinup + 1):
        truth.step(forcing.truth_at(k), forcing.truth_at(k + 1))
    c = coarse_grained(truth.get_state(), 2)
    ubar, vbar = truth.mean_velocity()
    with xr.open_dataset(out / "val.nc") as ds:
        # the window-mean velocity: the fine faces' 12 h mean, coarse-grained like the instantaneous velocity
        np.testing.assert_allclose(ds["reference_siu_mean12h"].values[0], coarsen_u(ubar, 2), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ds["reference_siv_mean12h"].values[0], coarsen_v(vbar, 2), rtol=1e-6, atol=1e-7)
        assert ds["reference_siu_mean12h"].attrs["cell_methods"] == "time: mean"
        assert not np.array_equal(ds["reference_siu_mean12h"].values, ds["reference_siu"].values)
        assert ds["time"].values[0] == np.datetime64(forcing.time(gen.n_spinup), "ns")
        assert int(ds["run_seed"].values[0]) == 12
        for v in ML_VARIABLES:
            np.testing.assert_array_equal(ds[f"reference_{v}"].values[0], c[v].astype(np.float32))
        coarse_f = forcing.coarse_at(gen.n_spinup + 1, 2)
        np.testing.assert_array_equal(ds["uas_t1"].values[0], coarse_f["uas"].astype(np.float32))


def test_initial_state_and_run_plan():
    gen = GenerateConfig(seeds={"train": [1, 2], "val": [3], "test": [4]}, start="2000-10-01T00:00")
    runs = plan_runs(gen)
    assert [(r.split, r.seed, r.index) for r in runs] == [("train", 1, 0), ("train", 2, 1), ("val", 3, 2),
                                                           ("test", 4, 3)]
    assert [r.start.year for r in runs] == [2000, 2001, 2002, 2003]
    s = initial_truth_state(gen.initial, GridConfig(nx=32, ny=32, dx=16e3), seed=1)
    assert 0.95 <= s["sic"].min() and s["sic"].max() <= 1.0
    assert s["sit"].min() == pytest.approx(0.5) and s["sit"].max() == pytest.approx(1.5)
    assert (s["damage"] == 1).all() and (s["siu"] == 0).all()
    with pytest.raises(ValueError, match="both 'train' and 'val'"):
        GenerateConfig(seeds={"train": [1], "val": [1]})


def test_serial_generation_is_reproducible():
    cfg = _config(run_days=1.0, spinup_days=0.0)
    run = plan_runs(cfg.generate)[0]
    a, b = simulate_run(cfg, run), simulate_run(cfg, run)
    xr.testing.assert_identical(a, b)


def test_interrupted_generation_keeps_its_finished_runs(generated, tmp_path, monkeypatch):
    """A generation stopped after its first run, started again into the same folder, runs only the rest and writes
    the same files as an uninterrupted one."""
    from coupling.bridge import CoarseModel
    from coupling.truth import TruthModel

    cfg, clean_dir, _ = generated
    made = []

    class FailsOnSecondRun(TruthModel):
        def __init__(self, *args, **kwargs):
            made.append(1)
            if len(made) > 1:
                raise RuntimeError("killed")
            super().__init__(*args, **kwargs)

    with pytest.raises(RuntimeError, match="killed"):
        run_generate(cfg, tmp_path, progress=False, models=(CoarseModel, FailsOnSecondRun))
    assert not (tmp_path / "train.nc").exists()
    assert [p.name for p in (tmp_path / ".parts").glob("run-*.nc")] == [
        f"run-0000-{run_fingerprint(cfg, plan_runs(cfg.generate)[0])}.nc"]

    simulated = []
    real = generate_module.simulate_run
    monkeypatch.setattr(generate_module, "simulate_run", lambda c, run, *a, **k: simulated.append(run.index)
                        or real(c, run, *a, **k))
    run_generate(cfg, tmp_path, progress=False)
    assert simulated == [1]  # the finished train run was kept
    assert not (tmp_path / ".parts").exists()
    for name in ("train.nc", "val.nc"):
        with xr.open_dataset(clean_dir / name) as a, xr.open_dataset(tmp_path / name) as b:
            xr.testing.assert_identical(a.load(), b.load())


def test_run_fingerprint_follows_the_config_not_the_other_runs():
    cfg = _config()
    run = plan_runs(cfg.generate)[0]
    more_val_seeds = _config(seeds={"train": [11], "val": [12, 13], "test": []})
    assert run_fingerprint(more_val_seeds, plan_runs(more_val_seeds.generate)[0]) == run_fingerprint(cfg, run)
    other_physics = TwinConfig.model_validate({"grid": GRID, "generate": GEN, "physics": {"p_star": 30000.0}})
    assert run_fingerprint(other_physics, run) != run_fingerprint(cfg, run)
    assert run_fingerprint(cfg, plan_runs(cfg.generate)[1]) != run_fingerprint(cfg, run)


@pytest.mark.mpi
def test_mpi_two_ranks_identical_to_serial(generated, tmp_path):
    cfg, serial_dir, _ = generated
    script = tmp_path / "gen_mpi.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from mpi4py import MPI
        from training.data.config import TwinConfig
        from training.data.generate import run_generate
        cfg = TwinConfig.model_validate_json({cfg.model_dump_json()!r})
        paths = run_generate(cfg, sys.argv[1], comm=MPI.COMM_WORLD, progress=False)
        assert [p.name for p in paths] == ["train.nc", "val.nc"], paths
    """))
    res = run_mpi(2, [str(script), str(tmp_path / "out")], timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "residual_sic" in res.stdout and "2 rank(s)" in res.stdout  # summary printed once, by rank 0
    assert res.stdout.count("generate:") == 1
    for name in ("train.nc", "val.nc"):
        with xr.open_dataset(serial_dir / name) as a, xr.open_dataset(tmp_path / "out" / name) as b:
            xr.testing.assert_identical(a.load(), b.load())


@pytest.mark.mpi
def test_failure_on_one_rank_fails_every_rank(tmp_path):
    script = tmp_path / "gen_fail.py"
    script.write_text(textwrap.dedent("""
        import sys
        from mpi4py import MPI
        from training.data.config import TwinConfig
        from training.data.generate import run_generate

        class Broken:
            def __init__(self, *a, **k):
                raise RuntimeError("model exploded")

        from coupling.bridge import CoarseModel
        cfg = TwinConfig.model_validate({"grid": {"nx": 16, "ny": 16, "dx": 32000.0}, "generate": {
            "run_days": 1, "spinup_days": 0, "seeds": {"train": [1], "val": [2], "test": []}}})
        truth = Broken if MPI.COMM_WORLD.rank == 1 else __import__("coupling.truth").truth.TruthModel
        try:
            run_generate(cfg, sys.argv[1], comm=MPI.COMM_WORLD, progress=False, models=(CoarseModel, truth))
        except RuntimeError as exc:
            print(f"rank {MPI.COMM_WORLD.rank} caught: {exc}", flush=True)
            MPI.COMM_WORLD.Barrier()  # both ranks have printed before either exits (mpiexec kills the rest)
            sys.exit(3)
    """))
    res = run_mpi(2, [str(script), str(tmp_path / "out")], timeout=240)
    assert res.returncode != 0
    assert "rank 0 caught" in res.stdout and "rank 1 caught" in res.stdout, res.stdout + res.stderr[-2000:]
    assert "model exploded" in res.stdout
    assert not (tmp_path / "out" / "train.nc").exists()


def test_drift_pairs_chain_free_model_states(generated):
    """Drift windows: restarts from the reference every segment, the model's own forecast in between, residual =
    reference − forecast, reference and forcing untouched, runs kept apart."""
    from training.fit.dataset import PairDataset
    from training.data.drift import DRIFT_RUN_OFFSET, with_drift_pairs

    _, out, _ = generated
    with xr.open_dataset(out / "train.nc") as ds:
        pairs = ds.load()
    both = with_drift_pairs(pairs, segment_steps=2)
    n = pairs.sizes["time"]
    assert both.sizes["time"] == 2 * n
    base, drift = both.isel(time=slice(0, n)), both.isel(time=slice(n, None))
    assert (base["drift_steps"].values == 0).all() and drift["drift_steps"].values.tolist() == [0, 1, 0, 1]
    assert (drift["run"].values == pairs["run"].values + DRIFT_RUN_OFFSET).all()
    for v in ML_VARIABLES:
        ini, fc = drift[f"initial_{v}"].values, drift[f"forecast_{v}"].values
        np.testing.assert_array_equal(ini[[0, 2]], pairs[f"initial_{v}"].values[[0, 2]])  # restarts
        np.testing.assert_array_equal(ini[[1, 3]], fc[[0, 2]])  # free run: the previous forecast
        np.testing.assert_array_equal(drift[f"reference_{v}"].values, pairs[f"reference_{v}"].values)
        res = drift[f"residual_{v}"].values.astype(np.float64)
        np.testing.assert_allclose(res, drift[f"reference_{v}"].values - fc.astype(np.float64), atol=1e-6)
    # the free state is not the reference: the model error is there from the first free step
    assert np.abs(drift["initial_sit"].values[1] - pairs["initial_sit"].values[1]).max() > 1e-4
    np.testing.assert_array_equal(drift["tas_t1"].values, pairs["tas_t1"].values)
    with pytest.raises(ValueError, match="already hold drift windows"):
        with_drift_pairs(both, 2)
    path = out / "with_drift.nc"
    both.to_netcdf(path)
    try:
        from corrector.config import CorrectorConfig

        data = PairDataset.for_config(CorrectorConfig(), path)
        assert len(data) == n + 2  # without the drift channel: the windows started from the reference
    finally:
        path.unlink()


def test_tendency_drift_targets_carry_the_references_change_from_the_drifted_state(generated):
    """target 'tendency': a drift window's reference is the drifted state plus the reference's own 12 h change
    (sic, sit, snt), the velocities keep the reference's state; restarts (0 steps old) are the plain windows."""
    from training.data.drift import drift_pairs

    _, out, _ = generated
    with xr.open_dataset(out / "train.nc") as ds:
        pairs = ds.load()
    state, tendency = drift_pairs(pairs, 2), drift_pairs(pairs, 2, target="tendency")
    for v in ML_VARIABLES:
        np.testing.assert_array_equal(tendency[f"initial_{v}"].values, state[f"initial_{v}"].values)
        ref, truth_next = tendency[f"reference_{v}"].values.astype(float), pairs[f"reference_{v}"].values.astype(float)
        np.testing.assert_allclose(ref[[0, 2]], truth_next[[0, 2]], atol=1e-6)  # restarts: unchanged
        want = truth_next if v in ("siu", "siv") else (
            state[f"initial_{v}"].values + truth_next - pairs[f"initial_{v}"].values.astype(float))
        np.testing.assert_allclose(ref, want, atol=1e-5)
        np.testing.assert_allclose(tendency[f"residual_{v}"].values,
                                   ref - tendency[f"forecast_{v}"].values.astype(float), atol=1e-5)
    assert not np.allclose(tendency["reference_sit"].values[1], pairs["reference_sit"].values[1])
    with pytest.raises(ValueError, match="target must be 'state' or 'tendency'"):
        drift_pairs(pairs, 2, target="nudge")


def test_generate_appends_drift_windows_to_the_chosen_splits(tmp_path):
    cfg = _config(run_days=1.0, drift_segment_days=1.0, seeds={"train": [11], "val": [12], "test": []})
    run_generate(cfg, tmp_path, progress=False)
    with xr.open_dataset(tmp_path / "train.nc") as train, xr.open_dataset(tmp_path / "val.nc") as val:
        assert train["drift_steps"].values.tolist() == [0, 0, 0, 1]
        assert len(np.unique(train["run"].values)) == 2
        assert val.sizes["time"] == 2 and "drift_steps" not in val


class _AddThickness:
    """A residual corrector stub adding 5 cm of ice thickness everywhere (the interface `drift_pairs` uses)."""

    mode, variables, conditioning_names = "residual", list(ML_VARIABLES), ["forecast_sit", "tas_t1", "mask"]

    def sample(self, cond, members, seeds):
        assert set(cond) == set(self.conditioning_names) and seeds.shape == (1, 1)
        out = np.zeros((1, members, len(self.variables)) + cond["forecast_sit"].shape[-2:], np.float32)
        out[:, :, self.variables.index("sit")] = 0.05
        return out

    def apply(self, base, sample, mask=None):
        return {v: base[v][:, None] + sample[:, :, i] for i, v in enumerate(self.variables)}


def test_hybrid_drift_pairs_follow_the_corrected_run(generated):
    """With a corrector, a drift window starts from the previous window's forecast plus its correction; the zero
    corrector gives the free-model windows."""
    from corrector.inference import Corrector
    from training.data.drift import DRIFT_RUN_OFFSET, drift_pairs, with_drift_pairs

    _, out, _ = generated
    with xr.open_dataset(out / "train.nc") as ds:
        pairs = ds.load()
    free = drift_pairs(pairs, segment_steps=4)
    zero = drift_pairs(pairs, segment_steps=4, corrector=Corrector.zero())
    for v in ML_VARIABLES:
        np.testing.assert_array_equal(zero[f"initial_{v}"].values, free[f"initial_{v}"].values)
    hybrid = drift_pairs(pairs, segment_steps=4, corrector=_AddThickness())
    sit, fc = hybrid["initial_sit"].values, hybrid["forecast_sit"].values.astype(np.float64)
    ice = hybrid["forecast_sic"].values[:-1] > 0
    np.testing.assert_allclose(sit[1:][ice], fc[:-1][ice] + 0.05, atol=1e-5)
    both = with_drift_pairs(pairs, 4, correctors=[_AddThickness()])
    assert both.sizes["time"] == 3 * pairs.sizes["time"]
    assert set(np.unique(both["run"].values) // DRIFT_RUN_OFFSET) == {0, 1, 2}


def test_dataset_uses_drift_windows_only_with_the_drift_channel(generated):
    from corrector.config import CorrectorConfig
    from corrector.fields import DRIFT_STEPS
    from training.fit.dataset import PairDataset
    from training.data.drift import with_drift_pairs

    _, out, _ = generated
    with xr.open_dataset(out / "train.nc") as ds:
        pairs = ds.load()
    n = pairs.sizes["time"]
    path = out / "with_drift_4.nc"
    with_drift_pairs(pairs, segment_steps=4).to_netcdf(path)  # drift windows 0, 1, 2, 3 steps old
    try:
        plain = PairDataset.for_config(CorrectorConfig(), path)
        assert len(plain) == n + 1  # the reference windows and the drift run's restart (0 steps old)
        assert plain.drift_windows_left_out == n - 1  # and the trainer says so
        drift = PairDataset.for_config(CorrectorConfig(max_drift_steps=2), path)
        assert len(drift) == 2 * n
        k = drift.cond_names.index(DRIFT_STEPS)
        steps = drift.read_physical(np.arange(2 * n))["cond"][:, k]
        assert (steps == steps[:, :1, :1]).all()  # constant in space
        assert steps[:, 0, 0].tolist() == [0] * n + [0, 1, 2, 2]  # clamped at max_drift_steps
    finally:
        path.unlink()


def test_drift_cli_bad_input_one_line_no_output(generated, tmp_path, capsys):
    from training.data.drift import main

    _, out, _ = generated
    with xr.open_dataset(out / "train.nc") as ds:
        ds.drop_vars("reference_sit").to_netcdf(tmp_path / "noref.nc")
    target = tmp_path / "drift.nc"
    assert main([str(tmp_path / "noref.nc"), str(target)]) == 2
    err = capsys.readouterr().err
    assert "noref.nc" in err and "'reference_sit'" in err and len(err.strip().splitlines()) == 1
    assert main([str(tmp_path / "absent.nc"), str(target)]) == 2
    assert "absent.nc" in capsys.readouterr().err
    assert not target.exists() and list(tmp_path.iterdir()) == [tmp_path / "noref.nc"]
    assert main([str(out / "train.nc"), str(target), "--segment-days", "1"]) == 0
    with xr.open_dataset(target) as ds:
        assert ds.sizes["time"] == 8 and ds["drift_steps"].values.tolist() == [0, 0, 0, 0, 0, 1, 0, 1]
