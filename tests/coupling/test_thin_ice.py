"""A correction must not create ice volume from an ill-conditioned forecast thickness.

In a year-long coupled run (runs/longrun/report.md) the coarse model's forecast had cells with sic ≈ 1e-6 and
sit = V/A ≈ 4560 m; the diffusion corrector raised sic there to ≈ 0.01 and `set_state` turned sit·sic into 37 m of
ice volume, which spread until the transport failed at day 240. The corrector now treats the forecast thickness as
0 where the forecast concentration is below THIN_FORECAST_SIC (`Corrector.apply` in residual mode: coupled
and offline correction alike).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from coupling.config import CorrectConfig
from coupling.correct import run_correct
from coupling.ensemble import EnsembleCorrection
from corrector.bounds import THIN_FORECAST_SIC, guard_thin_forecast
from tests.mpi_scripts import case
from tests.mpi_scripts.pairs import make_pair_file
from tests.mpi_scripts.tiny import tiny_corrector

VARS = ["sic", "sit", "snt", "siu", "siv"]
CELL = (5, 7)


class RaiseConcentration:
    """A residual corrector whose sample adds +0.01 to sic everywhere and nothing to the other variables."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def sample(self, conditioning, members, steps=None, seeds=None):
        b = next(iter(conditioning.values())).shape[0]
        out = np.zeros((b, members, len(VARS), 16, 16))
        out[:, :, 0] = 0.01
        return out


def thin_forecast() -> np.ndarray:
    """(1, 5, 16, 16) forecast: compact 1.5 m ice, one cell with sic 1e-6 and V/A = 4000 m (V = 4 mm)."""
    fc = np.zeros((1, 5, 16, 16))
    fc[0, 0], fc[0, 1], fc[0, 2] = 0.9, 1.5, 0.1
    fc[0, 0][CELL], fc[0, 1][CELL], fc[0, 2][CELL] = 1e-6, 4000.0, 300.0
    return fc


def test_guard_only_touches_thin_cells():
    fc = thin_forecast()[:, :, None]
    base, fired = guard_thin_forecast({v: fc[:, i] for i, v in enumerate(VARS)})
    assert fired == 2  # sit and snt of the one thin cell
    assert base["sit"][0, 0][CELL] == 0 and base["snt"][0, 0][CELL] == 0
    assert (base["sit"][0, 0] == 1.5).sum() == 255 and THIN_FORECAST_SIC <= 1e-2


def test_coupled_correction_creates_no_volume_at_a_thin_forecast_cell():
    corr = EnsembleCorrection(RaiseConcentration(tiny_corrector()), case.forcing(16, 4), [0], 1, 0, None)
    fc = thin_forecast()
    new = corr(0, range(1), fc, fc)
    sic, sit = new[0, 0], new[0, 1]
    # was: sit 4000 m, i.e. 40 m of ice volume created at that cell in one step; now no thickness, and the
    # concentration added without volume is removed by the bounds (no area without volume)
    assert sit[CELL] == 0.0 and sic[CELL] == 0.0
    np.testing.assert_array_equal(np.delete(sic.ravel(), CELL[0] * 16 + CELL[1]), 0.91)
    np.testing.assert_array_equal(np.delete(sit.ravel(), CELL[0] * 16 + CELL[1]), 1.5)
    assert corr.bounds_counts["thin_forecast_thickness"] == 2 and corr.bounds_counts["sic_without_volume"] == 1


def test_offline_correction_creates_no_volume_at_a_thin_forecast_cell(tmp_path):
    ds = xr.load_dataset(make_pair_file(tmp_path / "pairs.nc", n_time=2))
    for v, value in (("forecast_sic", 1e-6), ("forecast_sit", 4000.0)):
        a = ds[v].values.copy()
        a[:, CELL[0], CELL[1]] = value
        ds[v] = (ds[v].dims, a)
    ds.to_netcdf(tmp_path / "thin.nc")
    out = run_correct(CorrectConfig(members=2), tmp_path / "thin.nc", tmp_path / "c.nc", comm=None,
                      corrector=RaiseConcentration(tiny_corrector()))
    res = xr.load_dataset(out)
    assert (res["sit"].values[:, :, CELL[0], CELL[1]] == 0).all()
    assert (res["sic"].values[:, :, CELL[0], CELL[1]] == 0).all()  # no area without volume
    assert np.allclose(np.delete(res["sic"].values.reshape(2, 2, -1), CELL[0] * 16 + CELL[1], axis=-1),
                       np.delete(ds["forecast_sic"].values.reshape(2, 1, -1), CELL[0] * 16 + CELL[1], axis=-1)
                       .clip(max=0.99) + 0.01, atol=1e-6)
