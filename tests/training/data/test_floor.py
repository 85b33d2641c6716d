"""The twin's predictability floor (`icecorr floor`) with the real truth (BBM) and coarse (mEVP) models on a 16²
coarse grid: members differ only through the redrawn parts, spread grows from 0, MPI gives the same file, and the
evaluation report shows the floor."""
from __future__ import annotations

import shutil
import textwrap

import numpy as np
import pytest
import xarray as xr

from icecorr.base.variables import ML_VARIABLES
from training.data.coarsegrain import block_mean
from training.data.floor import FloorRank, floor_run, run_floor, start_windows
from training.data.floor_config import FloorRunConfig
from training.data.generate import simulate_run
from training.data.floor_members import member_forcing, shuffled_within_blocks
from training.evaluation.config import EvaluateConfig
from training.evaluation.evaluate import evaluate, run_evaluate
from training.evaluation.floor_file import floor_scores, floor_table
from training.evaluation.metrics_file import read_metrics_netcdf

from tests.helpers.mpirun import run_mpi
from tests.training.evaluation.test_evaluate import runs, scenario  # noqa: F401 - the evaluation's fixture

TWIN = {"grid": {"nx": 16, "ny": 16, "dx": 32_000.0},
        "generate": {"run_days": 3.0, "spinup_days": 0.5, "seeds": {"train": [11], "val": [], "test": [13]}}}


def _config(**floor) -> FloorRunConfig:
    return FloorRunConfig.model_validate({**TWIN, "floor": {"starts": 2, "members": 3, "lead_days": 1.0, **floor}})


class Capturing(FloorRank):
    """FloorRank that keeps every window's coarse-grained truth and members."""

    def window(self, position, w, progress):
        self.captured = getattr(self, "captured", {})
        self.captured[position] = (np.stack(w["truth"]),
                                   [self.member(position, m, w, progress) for m in range(self.fl.members)])
        return super().window(position, w, progress)


def _captured(cfg: FloorRunConfig) -> dict:
    worker = Capturing(cfg)
    starts = worker.floor_starts()
    worker.run(starts, list(range(len(starts))))
    return worker.captured


@pytest.fixture(scope="module")
def floor_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("floor") / "floor.nc"
    cfg = _config()
    run_floor(cfg, out)
    return cfg, out


def test_without_redraw_every_member_is_the_truth_bit_for_bit():
    captured = _captured(_config(starts=1, members=2, redraw={"noise": False, "cohesion": False, "damage": False}))
    truth, members = captured[0]
    assert truth.shape[0] == 3  # leads 0, 12 h, 24 h
    for member in members:
        assert np.array_equal(member, truth)


@pytest.mark.parametrize("part", ["noise", "cohesion", "damage"])
def test_each_redrawn_part_alone_makes_members_differ(part):
    redraw = {"noise": False, "cohesion": False, "damage": False, part: True}
    truth, members = _captured(_config(starts=1, members=2, redraw=redraw))[0]
    for member in members:
        assert np.array_equal(member[0], truth[0])  # the coarse-grained start state is the truth's
        assert not np.array_equal(member[-1], truth[-1])
    assert not np.array_equal(members[0][-1], members[1][-1])


def test_pairs_coarse_forecast_is_the_pair_files_forecast():
    """The coarse model of floor_ratio_pairs, 12 h after each start: generate's forecast_* of that window."""
    cfg = _config(starts=2, members=2)
    pairs = simulate_run(cfg, floor_run(cfg))
    worker = FloorRank(cfg)
    forecasts = {}

    def window(position, w, progress):
        forecasts[position] = worker.coarse_forecast(w, pairs=True)[1]
        return FloorRank.window(worker, position, w, progress)

    worker.window = window
    starts = worker.floor_starts()
    worker.run(starts, [0, 1])
    for position, s in enumerate(starts):
        for j, v in enumerate(ML_VARIABLES):
            stored = pairs[f"forecast_{v}"].isel(time=s).values
            np.testing.assert_array_equal(forecasts[position][j].astype(stored.dtype), stored)


def test_redrawn_parts_keep_what_the_coarse_model_knows():
    rng = np.random.default_rng(0)
    damage = rng.uniform(0.5, 1.0, (8, 8))
    ocean = np.ones((8, 8))
    ocean[0, 0] = 0.0
    shuffled = shuffled_within_blocks(damage, 2, np.random.default_rng(1), ocean)
    assert shuffled[0, 0] == damage[0, 0]  # land stays
    assert np.allclose(block_mean(shuffled, 2), block_mean(damage, 2))
    assert not np.array_equal(shuffled, damage)
    for j in range(0, 8, 2):
        for i in range(0, 8, 2):
            assert sorted(shuffled[j:j + 2, i:i + 2].ravel()) == sorted(damage[j:j + 2, i:i + 2].ravel())
    truth = {"uas": rng.normal(size=(8, 8)), "vas": rng.normal(size=(8, 8)), "tas": np.full((8, 8), 250.0)}
    noise = {"uas_noise": rng.normal(size=(8, 8)), "vas_noise": rng.normal(size=(8, 8))}
    other = {"uas_noise": rng.normal(size=(8, 8)), "vas_noise": rng.normal(size=(8, 8))}
    member = member_forcing(truth, noise, other, 2)
    for name in ("uas", "vas"):
        assert np.allclose(block_mean(member[name], 2), block_mean(truth[name], 2))
        assert not np.allclose(member[name], truth[name])
    assert member["tas"] is truth["tas"]
    assert member_forcing(truth, noise, None, 2) is truth


def test_start_dates_stay_inside_the_run():
    assert start_windows(360, 6, 30) == [0, 66, 132, 198, 264, 330]
    assert start_windows(10, 1, 4) == [0]
    with pytest.raises(ValueError):
        start_windows(10, 2, 12)
    with pytest.raises(ValueError):
        start_windows(4, 4, 2)


def test_floor_file_spread_grows_from_zero(floor_file):
    cfg, path = floor_file
    with xr.open_dataset(path) as ds:
        assert list(ds["lead_time"].values) == [0.0, 12.0, 24.0]
        assert ds.attrs["members"] == 3 and ds.attrs["starts"] == 2 and ds.attrs["seed"] == 0
        assert ds.attrs["run_seed"] == 13 and ds.sizes["start"] == 2
        for v in ML_VARIABLES:
            spread = ds[f"{v}_floor_spread"].values
            assert spread[0] < 1e-12 and np.all(spread[1:] > 0), (v, spread)
            assert np.all(ds[f"{v}_coarse_rmse"].values[1:] > 0)
            for suffix in ("", "_pairs"):
                ratio = ds[f"{v}_floor_ratio{suffix}"].values
                assert np.isnan(ratio[0]) or ratio[0] < 1e-6
                assert np.allclose(ratio[1:], spread[1:] / ds[f"{v}_coarse_rmse{suffix}"].values[1:])
            assert ds[f"{v}_floor_spread"].attrs["units"]


@pytest.mark.mpi
def test_mpi_two_ranks_identical_to_serial(floor_file, tmp_path):
    cfg, serial = floor_file
    script = tmp_path / "floor_mpi.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from mpi4py import MPI
        from training.data.floor import run_floor
        from training.data.floor_config import FloorRunConfig
        cfg = FloorRunConfig.model_validate_json({cfg.model_dump_json()!r})
        run_floor(cfg, sys.argv[1], comm=MPI.COMM_WORLD)
    """))
    res = run_mpi(2, [str(script), str(tmp_path / "floor.nc")], timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    with xr.open_dataset(serial) as a, xr.open_dataset(tmp_path / "floor.nc") as b:
        xr.testing.assert_identical(a.load(), b.load())


def test_report_shows_the_floor(floor_file):
    _, path = floor_file
    leads = np.array([0.0, 12.0, 24.0])
    scores = floor_scores(path, list(ML_VARIABLES), leads)
    rmse = xr.DataArray(np.ones((2, 5, 3)), dims=("model", "variable", "lead"),
                        coords={"model": ["coarse", "deterministic"], "variable": list(ML_VARIABLES), "lead": leads})
    m = xr.merge([xr.Dataset({"rmse": rmse * xr.DataArray([1.0, 0.5], dims="model")}), scores])
    table = floor_table(m, leads=(12.0, 24.0))
    assert "| sic | deterministic | 0.50 | 0.50 |" in table
    with xr.open_dataset(path) as ds:
        assert f"| siu | **floor** | {float(ds['siu_floor_ratio'][1]):.2f} |" in table


def test_evaluate_finds_the_floor_beside_the_reference(scenario, floor_file, tmp_path):  # noqa: F811
    """`icecorr evaluate`: floor.nc beside the reference (or `evaluate.floor`) → metrics, report row and plot."""
    shutil.copy(floor_file[1], scenario["dir"] / "floor.nc")
    report = run_evaluate(runs(scenario), scenario["ref"], tmp_path / "report", leads=(12, 72))
    text = report.read_text()
    assert "## RMSE relative to the coarse model and the predictability floor" in text
    assert "| sic | **floor** |" in text and "| sit | deterministic |" in text
    metrics = read_metrics_netcdf(tmp_path / "report" / "metrics.nc")
    assert np.isfinite(metrics["floor_ratio"].sel(variable="siv", lead=12.0))
    assert np.isnan(metrics["floor_ratio"].sel(variable="siv", lead=72.0))  # beyond the floor file's leads
    metrics.close()
    (scenario["dir"] / "floor.nc").unlink()
    explicit = evaluate(runs(scenario), scenario["ref"], config=EvaluateConfig(floor=str(floor_file[1]), plots=False))
    assert "floor_ratio" in explicit.metrics
    assert "floor_ratio" not in evaluate(runs(scenario), scenario["ref"], config=EvaluateConfig(plots=False)).metrics


def test_explicit_start_windows_replace_the_even_spread():
    """`floor.start_windows` (e.g. the demo's coupled windows) are the floor's starts; outside the run: an error."""
    n_windows = FloorRank(_config()).gen.n_windows  # 3 days after a 0.5-day spin-up: 5 windows
    assert FloorRank(_config(start_windows=[3, 0])).floor_starts() == [0, 3]
    for bad in ([0, n_windows], [1, 1], [-1]):
        with pytest.raises(ValueError, match="floor.start_windows"):
            FloorRank(_config(start_windows=bad)).floor_starts()
