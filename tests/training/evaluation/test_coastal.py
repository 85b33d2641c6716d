"""The coastal band scored apart from the open sea (training.evaluation.coastal): a constructed case whose errors
sit only near the coast."""
from __future__ import annotations

import numpy as np
import xarray as xr

from training.evaluation.coastal import coastal_band, coastal_table, region_masks
from training.evaluation.config import EvaluateConfig
from training.evaluation.evaluate import evaluate
from training.evaluation.report import report_text

from tests.training.evaluation.test_evaluate import N, truth_trajectory, write_reference, write_trajectory


def land_mask() -> np.ndarray:
    m = np.ones((N, N))
    m[:, :4] = 0.0  # a west coast
    return m


def test_coastal_band_by_distance():
    band = coastal_band(land_mask(), 2)
    assert band[:, 4:6].all() and not band[:, 6:].any() and not band[:, :4].any()   # two ocean columns
    island = np.ones((9, 9))
    island[4, 4] = 0
    b = coastal_band(island, 1.5)
    assert b.sum() == 8 and not b[4, 4]                       # the 8 neighbours (diagonals at √2)
    assert not coastal_band(np.ones((6, 6)), 2).any()          # no land: no band (walls are not coast)
    assert region_masks(xr.DataArray(np.ones((6, 6)), dims=("y", "x")), 2) is None


def test_errors_near_the_coast_show_in_the_coastal_scores_only(tmp_path):
    mask = land_mask()
    truth = truth_trajectory(5, seed=3)
    truth = {v: np.where(mask > 0, a, 0.0) for v, a in truth.items()}
    ref = write_reference(tmp_path / "truth.nc", truth, mask)
    coast = coastal_band(mask, 2)
    rng = np.random.default_rng(1)
    runs = {}
    for label, err in (("near_coast", 0.05), ("perfect", 0.0)):
        members = {v: np.repeat(a[:, None], 3, axis=1).copy() for v, a in truth.items()}
        for v in members:
            members[v][..., coast] += err + 0.01 * rng.standard_normal(members[v][..., coast].shape)
        runs[label] = [write_trajectory(tmp_path / f"{label}.nc", members, 0)]
    m = evaluate(runs, ref, config=EvaluateConfig(persistence=False)).metrics
    assert int(m["cells_coastal"]) == 2 * N and int(m["cells_open"]) == (N - 6) * N
    near = m.sel(model="near_coast", variable="sit", lead=12.0)
    assert float(near["rmse_open"]) < 1e-6 and 0.04 < float(near["rmse_coastal"]) < 0.07
    assert float(near["spread_coastal"]) > 0.005 and float(near["spread_open"]) < 1e-6
    # the domain-wide RMSE is the area-weighted mix of the two
    mix = np.sqrt((2 * float(near["rmse_coastal"]) ** 2 + (N - 6) * float(near["rmse_open"]) ** 2) / (N - 4))
    assert np.isclose(float(near["rmse"]), mix, rtol=1e-6)
    table = coastal_table(m, 12.0)
    assert "| sit | near_coast |" in table and "32 ocean cells within 2" in table
    assert "## Coastal band and open sea" in report_text(m, {}, tmp_path)
    off = evaluate(runs, ref, config=EvaluateConfig(persistence=False, coastal_band_cells=0)).metrics
    assert "rmse_coastal" not in off and coastal_table(off, 12.0) is None


def test_run_coordinates_of_the_model_match_projection_coordinates():
    from training.evaluation.alignment import same_cells

    proj = -2.85e6 + (np.arange(6) + 0.5) * 25e3       # a region's EPSG:3413 x
    own = (np.arange(6) + 0.5) * 25e3                   # what icecorr couple writes
    assert same_cells(own, proj) and same_cells(proj, proj)
    assert not same_cells((np.arange(6) + 0.5) * 12.5e3, proj)   # another spacing
    assert not same_cells(proj + 1e4, proj) and not same_cells(own[:5], proj[:5] * 2)
