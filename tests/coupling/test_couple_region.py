"""A coupled run on a regional twin's pair file (one process): the grid's mask and latitudes come from the file,
a mask that disagrees with the file's is refused naming both, and ice stays exactly 0 on land after corrections."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from coupling.config import CoupleConfig
from coupling.couple import run_couple
from fortran_stub.config import GridConfig
from icecorr.base.errors import InputError
from coupling.fortran_arrays import closed_faces
from tests.coupling.test_couple_land import IceOnLand
from tests.mpi_scripts.tiny import tiny_corrector
from tests.training.data.test_region_twin import SMALL, synthetic_ocean
from training.data import geography
from training.data.config import TwinConfig
from training.data.generate import run_generate


def assert_land_empty(ds: xr.Dataset, mask: np.ndarray) -> None:
    """sic, sit, snt exactly 0 on land and siu, siv exactly 0 on closed faces, at every record and member."""
    east, north = closed_faces(mask)
    for v in ("sic", "sit", "snt"):
        assert np.all(ds[v].values[..., mask == 0] == 0.0), v
    assert np.all(ds["siu"].values[..., east] == 0.0) and np.all(ds["siv"].values[..., north] == 0.0)


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory):
    """Two days of a 12 x 12 (25 km) regional twin on a synthetic coast."""
    out = tmp_path_factory.mktemp("region") / "data"
    mp = pytest.MonkeyPatch()
    mp.setattr(geography, "is_ocean", synthetic_ocean)
    try:
        cfg = TwinConfig.model_validate({
            "region": SMALL, "generate": {"spinup_days": 1, "run_days": 2, "coarse_spinup_steps": 1,
                                          "seeds": {"train": [1], "val": [], "test": []},
                                          "start": "2001-01-10T00:00"}})
        run_generate(cfg, out, progress=False)
    finally:
        mp.undo()
    return out / "train.nc"


def test_ice_stays_off_land_after_corrections(pair_file, tmp_path):
    grid = GridConfig(nx=12, ny=12, dx=25_000.0, mask=str(pair_file), latitude=str(pair_file))
    mask = grid.ocean_mask()
    assert (mask == 0).sum() > 44 and np.allclose(grid.latitudes(), xr.load_dataset(pair_file)["lat"].values)
    cfg = CoupleConfig(members=2, n_steps=3)
    corrector = IceOnLand(tiny_corrector(12, 12, 25_000.0))
    path = run_couple(cfg, str(pair_file), str(pair_file), tmp_path / "run.nc", comm=None, grid=grid,
                      corrector=corrector)[0]
    ds = xr.load_dataset(path)
    assert_land_empty(ds, mask)
    sit = ds["sit"].values
    assert sit[1:, ..., mask > 0].mean() > sit[0, ..., mask > 0].mean() + 0.3  # the corrections went through


def test_grid_mask_must_match_the_files(pair_file, tmp_path):
    cfg = CoupleConfig(members=1, n_steps=1)
    with pytest.raises(InputError, match=r"mask.*grid.mask = none \(all ocean\)") as err:
        run_couple(cfg, str(pair_file), str(pair_file), tmp_path / "box.nc", comm=None,
                   grid=GridConfig(nx=12, ny=12, dx=25_000.0), corrector=tiny_corrector(12, 12, 25_000.0))
    assert str(pair_file) in str(err.value)
