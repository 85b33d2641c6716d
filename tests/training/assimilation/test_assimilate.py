"""4D-Var: Taylor test of the gradient, a twin with a known advective model, and `icecorr assimilate` end to end in
a perfect-model twin with a tiny emulator (analysis beats background, outputs, errors)."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from corrector.adjoint import Rollout
from corrector.bounds import TorchBounds
from corrector.checkpoint import mask_hash, save_checkpoint
from training.assimilation.background import Correlation, gaussian_sqrt
from training.assimilation.config import AssimilateConfig, MinimizerConfig
from training.assimilation.fourdvar import FourDVar
from training.assimilation.runner import main
from training.assimilation.scores import rmse
from training.data.observation_config import ObservationConfig, SwathConfig
from training.data.observation_gaps import swath_mask
from training.data.observations import synthesize
from tests.corrector.test_adjoint import N, emulator, interior_state, mask_and_inputs

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
DX = 16000.0


def taylor_residuals(problem: FourDVar, z: np.ndarray, d: np.ndarray, eps=(1e-1, 1e-2, 1e-3)) -> list[float]:
    j0, g, _ = problem.cost_and_gradient(z.ravel())
    slope = float(g @ d.ravel())
    return [abs(problem.cost((z + e * d).ravel()) - j0 - e * slope) for e in eps], slope


@pytest.mark.parametrize("length_km", [None, 60.0])
def test_taylor_test_of_the_4dvar_gradient(length_km):
    c = emulator()
    mask, inputs = mask_and_inputs(c, 3)
    from corrector.adjoint import CorrectorRollout

    roll = CorrectorRollout(c, inputs, mask=mask)
    rng = np.random.default_rng(0)
    xb = roll.state_array(interior_state(rng, mask))
    truth = roll.forward(xb + 0.1 * rng.normal(size=xb.shape) * mask)
    obs = np.where(rng.uniform(size=truth.shape) < 0.5, truth + 0.01 * rng.normal(size=truth.shape), np.nan)
    std = np.full(truth.shape, 0.02)
    ocean = mask > 0.5
    problem = FourDVar(roll, xb, obs, std, ["sit", "sic"], {"sit": 0.1, "sic": 0.02}, ocean,
                       Correlation(N, N, DX, length_km * 1e3 if length_km else None))
    z = 0.3 * rng.normal(size=problem.scale.shape)
    d = rng.normal(size=z.shape)
    res, slope = taylor_residuals(problem, z, d)
    assert abs(slope) > 0
    # second order: 10× smaller ε, ~100× smaller remainder (not merely the 10× of a wrong gradient)
    assert res[1] < res[0] / 50 and res[2] < res[1] / 50
    j0 = problem.cost(z.ravel())
    assert res[2] < 1e-6 * abs(j0) + 1e-12


def test_gaussian_correlation_square_root():
    lm = gaussian_sqrt(32, DX, 100e3)
    cov = lm @ lm.T
    np.testing.assert_allclose(np.diag(cov), 1.0, atol=1e-12)
    # interior correlation at one length scale ≈ exp(-1/2)
    k = int(round(100e3 / DX))
    assert cov[16, 16 + k] == pytest.approx(np.exp(-0.5 * (k * DX / 100e3) ** 2), abs=0.02)
    corr = Correlation(8, 12, DX, 50e3)
    rng = np.random.default_rng(1)
    z, g = rng.normal(size=(2, 8, 12)), rng.normal(size=(2, 8, 12))
    assert np.sum(corr.apply(z) * g) == pytest.approx(np.sum(z * corr.transpose(g)), rel=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# A twin with a known advective model wrapped as a Rollout
# ----------------------------------------------------------------------------------------------------------------

def advection_rollout(n_steps: int, courant=(0.5, 0.25)) -> Rollout:
    """sit and sic carried by a uniform current (first-order upwind, closed walls): a linear, known dynamics."""
    cx, cy = courant

    def step(x: torch.Tensor, k: int) -> torch.Tensor:
        west = torch.cat([x[:, :, :1], x[:, :, :-1]], dim=2)  # zero-gradient inflow at the west wall
        south = torch.cat([x[:, :1, :], x[:, :-1, :]], dim=1)
        return x - cx * (x - west) - cy * (x - south)

    return Rollout(step, n_steps, ["sic", "sit"], (N, N), bounds=TorchBounds(["sic", "sit"], None, N, N))


def smooth(rng, scale_cells=4.0):
    lm = gaussian_sqrt(N, 1.0, scale_cells)
    f = lm @ rng.normal(size=(N, N)) @ lm.T
    return f / f.std()


def test_4dvar_twin_with_an_advective_model_beats_the_background():
    n = 8
    roll = advection_rollout(n)
    rng = np.random.default_rng(3)
    x_true = np.stack([np.clip(0.9 + 0.05 * smooth(rng), 0, 1), 1.5 + 0.4 * smooth(rng)])
    truth = roll.forward(x_true)
    sigma = {"sic": 0.05, "sit": 0.3}
    corr = Correlation(N, N, DX, 60e3)
    xb = x_true.copy()
    xb[0] = np.clip(xb[0] + sigma["sic"] * corr.apply(rng.normal(size=(1, N, N)))[0], 0, 1)
    xb[1] = np.maximum(xb[1] + sigma["sit"] * corr.apply(rng.normal(size=(1, N, N)))[0], 0)
    # gappy observations: a moving swath per time, 55 % of the cells missing, noise well below the background error
    obs = np.full(truth.shape, np.nan)
    for k in range(n + 1):
        seen = swath_mask(np.random.default_rng(k), N, N, DX, SwathConfig(period_km=100, observed_fraction=0.45))
        obs[k, :, seen] = (truth[k][:, seen] + np.array([[0.01], [0.05]]) * rng.normal(size=(2, seen.sum()))).T
    std = np.broadcast_to(np.array([0.01, 0.05])[None, :, None, None], truth.shape).copy()
    ocean = np.ones((N, N), bool)
    problem = FourDVar(roll, xb, obs, std, ["sit", "sic"], sigma, ocean, corr)
    result = problem.minimise(MinimizerConfig(max_iterations=80))
    hist = result.history
    assert hist[-1]["J"] < 0.2 * hist[0]["J"]
    assert all(b["J"] <= a["J"] + 1e-9 for a, b in zip(hist, hist[1:]))
    b0, a0 = rmse(xb[1], x_true[1], ocean), rmse(result.state[1], x_true[1], ocean)
    assert a0 < 0.5 * b0  # ≥ 50 % lower initial-thickness RMSE
    fa, fb = roll.forward(result.state), roll.forward(xb)
    assert np.mean([rmse(fa[k, 1], truth[k, 1], ocean) for k in range(1, n + 1)]) < \
        np.mean([rmse(fb[k, 1], truth[k, 1], ocean) for k in range(1, n + 1)])


def test_diagonal_b_uses_box_constraints():
    roll = advection_rollout(2)
    rng = np.random.default_rng(4)
    x_true = np.stack([np.full((N, N), 0.99), 0.05 + 0.02 * smooth(rng)])
    truth = roll.forward(x_true)
    xb = x_true + np.stack([0.0 * x_true[0], 0.2 * np.ones((N, N))])
    obs = truth.copy()
    obs[:, 0] += 0.05  # observations of sic above 1 pull it to the bound
    std = np.full(truth.shape, 0.01)
    problem = FourDVar(roll, xb, obs, std, ["sit", "sic"], {"sit": 0.3, "sic": 0.1}, np.ones((N, N), bool),
                       Correlation(N, N, DX, None))
    result = problem.minimise(MinimizerConfig(max_iterations=40))
    assert result.state[0].max() <= 1.0 and result.state[1].min() >= 0.0
    assert np.isclose(result.state[0], 1.0).mean() > 0.9


# ----------------------------------------------------------------------------------------------------------------
# `icecorr assimilate` end to end: a perfect-model twin with a tiny emulator checkpoint
# ----------------------------------------------------------------------------------------------------------------

def write_emulator_twin(tmp: Path, n_time: int = 12) -> tuple[Path, Path]:
    """A tiny random emulator checkpoint and a pair file whose truth is that emulator's own trajectory."""
    from corrector.adjoint import CorrectorRollout

    c = emulator(scale=0.02, seed=2)
    mask, inputs = mask_and_inputs(c, n_time, seed=5)
    ckpt = save_checkpoint(tmp / "emulator.pt", model_state=c.model.state_dict(), ema_state=None, config=c.config,
                           normalization=c.normalization, grid={"nx": N, "ny": N, "dx": DX,
                                                                "mask_hash": mask_hash(mask)},
                           variables_units={"sic": "1", "sit": "m", "snt": "m", "siu": "m s-1", "siv": "m s-1"})
    roll = CorrectorRollout(c, inputs, mask=mask)
    rng = np.random.default_rng(6)
    x0 = interior_state(rng, mask)
    x0["sic"] = np.clip(0.9 + 0.05 * smooth(rng), 0, 1) * mask
    x0["sit"] = (1.5 + 0.4 * smooth(rng)) * mask
    traj = roll.forward(roll.state_array(x0))
    dims = ("time", "y", "x")
    data = {}
    for k, v in enumerate(roll.variables):
        data[f"initial_{v}"] = (dims, traj[:-1, k])
        data[f"reference_{v}"] = (dims, traj[1:, k])
        data[f"forecast_{v}"] = (dims, traj[:-1, k])
        data[f"residual_{v}"] = (dims, traj[1:, k] - traj[:-1, k])
    for name in inputs[0]:
        if name != "mask":
            data[name] = (dims, np.stack([i[name] for i in inputs]))
    data["mask"] = (("y", "x"), mask.astype(np.int8))
    data["run"] = (("time",), np.zeros(n_time, np.int32))
    ds = xr.Dataset(data, coords={"time": np.datetime64("2001-01-01T00:00") + np.arange(n_time) *
                                  np.timedelta64(12, "h")}, attrs={"grid_dx": DX})
    ds.to_netcdf(tmp / "truth.nc")
    return ckpt, tmp / "truth.nc"


def test_cli_perfect_model_twin(tmp_path, capsys):
    ckpt, truth = write_emulator_twin(tmp_path)
    obs = tmp_path / "obs.nc"
    cov = synthesize(truth, obs, ObservationConfig(seed=3, missing_day_probability=0.0))
    assert cov["sit"] <= 0.6
    cfg = tmp_path / "assim.yaml"
    cfg.write_text(f"assimilate:\n  checkpoint: {ckpt}\n  observations: {obs}\n  truth: {truth}\n"
                   f"  start: '2001-01-02T00:00'\n  window_days: 2\n  minimizer: {{max_iterations: 25}}\n"
                   f"  background: {{perturbation: {{sigma: {{sit: 0.3, sic: 0.05}}, length_scale_km: 80}}}}\n"
                   f"  b: {{sigma: {{sit: 0.3, sic: 0.05}}, length_scale_km: 80}}\n")
    out = tmp_path / "out"
    assert main([str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sit: initial RMSE background" in printed
    summary = json.loads((out / "summary.json").read_text())
    s = summary["scores"]["sit"]
    assert s["initial_rmse_analysis"] < 0.5 * s["initial_rmse_background"]
    assert s["forecast_rmse_analysis"] < s["forecast_rmse_background"]
    rows = list(csv.DictReader(open(out / "cost.csv")))
    assert float(rows[-1]["J"]) < float(rows[0]["J"]) and int(rows[0]["iteration"]) == 0
    ds = xr.load_dataset(out / "analysis.nc")
    assert ds["forecast_analysis_sit"].shape == (5, N, N) and "truth_sit" in ds
    np.testing.assert_allclose(ds["analysis_siu"].values, ds["background_siu"].values)  # velocities held
    assert (out / "assimilation.png").stat().st_size > 1000
    assert not list(out.glob("*.tmp-*"))


def test_cli_errors_name_file_and_field(tmp_path, capsys):
    ckpt, truth = write_emulator_twin(tmp_path, n_time=6)
    obs = tmp_path / "obs.nc"
    synthesize(truth, obs, ObservationConfig(seed=3))
    base = [f"assimilate.checkpoint={ckpt}", f"assimilate.observations={obs}", f"assimilate.truth={truth}"]
    cfg = tmp_path / "a.yaml"
    cfg.write_text("assimilate:\n  start: '0'\n")
    assert main([str(cfg), *base, "assimilate.window_days=5"]) == 2
    err = capsys.readouterr().err
    assert "obs.nc" in err and "10 consecutive 12 h windows" in err
    base.append("assimilate.window_days=2")
    assert main([str(cfg), *base, "assimilate.start=1999-01-01T00:00"]) == 2
    assert "no window starts at 1999-01-01T00:00" in capsys.readouterr().err
    assert main([str(cfg), *base, "assimilate.control=[siu]"]) == 2
    assert "cannot be controlled" in capsys.readouterr().err
    assert main([str(cfg), *base, "assimilate.observations=/nonexistent.nc"]) == 2
    assert "/nonexistent.nc" in capsys.readouterr().err
    xr.load_dataset(obs).drop_vars("uas_t1").to_netcdf(tmp_path / "broken.nc")
    assert main([str(cfg), *base, f"assimilate.observations={tmp_path / 'broken.nc'}"]) == 2
    err = capsys.readouterr().err
    assert "broken.nc" in err and "uas_t1" in err
    assert main([str(cfg), *base, "--dry-run"]) == 0
    assert "window_days: 2.0" in capsys.readouterr().out
    with pytest.raises(ValueError, match="b.sigma lacks"):
        AssimilateConfig(start="0", control=["snt"], b={"sigma": {"sit": 0.3}})
