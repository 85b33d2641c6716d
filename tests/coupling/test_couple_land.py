"""A coupled run on a grid with land (one process): the coarse model and the corrector's bounds keep land empty.

Before land existed in the Fortran model, sea-ice concentration on the land cells of such a run rose from 0 to
0.84 within 3 days (issue 18)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from corrector.inference import Corrector
from coupling.config import CoupleConfig
from coupling.couple import run_couple
from coupling.forcing import CallableForcing
from coupling.fortran_arrays import closed_faces
from fortran_stub.config import GridConfig
from tests.mpi_scripts import case
from tests.mpi_scripts.tiny import tiny_corrector

N = 16
VARS = ["sic", "sit", "snt", "siu", "siv"]


def land_mask() -> np.ndarray:
    """An island and a strip of coast along the north wall."""
    m = np.ones((N, N))
    m[6:9, 5:9] = 0.0
    m[-2:, 3:12] = 0.0
    return m


class IceOnLand:
    """A corrector whose samples put ice everywhere, land included (+0.3 sic, +0.5 m sit, 0.05 m s-1 velocities):
    only the bounds, which apply the run's mask, keep it off the land."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def sample(self, *args, **kwargs):
        out = np.array(self._inner.sample(*args, **kwargs))
        for k, v in enumerate(self._inner.variables):
            out[..., k, :, :] += {"sic": 0.3, "sit": 0.5, "snt": 0.02, "siu": 0.05, "siv": 0.05}.get(v, 0.0)
        return out


def _run(tmp_path, name, corrector, steps):
    mask = land_mask()
    base = case.forcing(N, steps + 2)
    forcing = CallableForcing(lambda k: base.pair(k)[0], start=base.start, mask=mask)
    initial = {k: np.where(mask > 0, v, 0.0) for k, v in case.initial_state(N).items()}
    grid = GridConfig(nx=N, ny=N, dx=16_000.0, mask=mask)
    cfg = CoupleConfig(members=2, n_steps=steps)
    path = run_couple(cfg, initial, forcing, tmp_path / f"{name}.nc", comm=None, grid=grid, corrector=corrector)[0]
    return xr.load_dataset(path), mask


def _assert_land_empty(ds: xr.Dataset, mask: np.ndarray) -> None:
    land = mask == 0
    east, north = closed_faces(mask)
    for v in ("sic", "sit", "snt"):
        assert np.all(ds[v].values[..., land] == 0.0), v
    assert np.all(ds["siu"].values[..., east] == 0.0) and np.all(ds["siv"].values[..., north] == 0.0)


def test_coupled_run_keeps_land_free_of_ice(tmp_path):
    """Three days with the zero corrector (the model's own forecasts): no ice on land at any record."""
    ds, mask = _run(tmp_path, "zero", Corrector.zero(grid={"ny": N, "nx": N}), steps=6)
    _assert_land_empty(ds, mask)
    assert float(ds["sic"].values[..., mask > 0].max()) > 0.5  # there is ice in the ocean
    assert np.abs(ds["siu"].values).max() > 0.0                # and it moves


def test_corrections_never_put_ice_on_land(tmp_path):
    """A corrector that adds ice everywhere: the corrected states (the records) hold none on land, while the ocean
    cells got the added ice, and the model's next forecasts start from them without ice on land."""
    ds, mask = _run(tmp_path, "landice", IceOnLand(tiny_corrector()), steps=3)
    _assert_land_empty(ds, mask)
    sit = ds["sit"].values
    assert sit[1:, ..., mask > 0].mean() > sit[0, ..., mask > 0].mean() + 0.3  # the correction went through
