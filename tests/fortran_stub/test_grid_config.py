"""GridConfig's land mask and latitudes: validation, files, refinement, YAML round trip."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import yaml

from fortran_stub.config import EARTH_ROTATION, GridConfig, refine_linear


def test_mask_is_validated():
    ok = np.ones((6, 5))
    ok[2, 2] = 0
    assert GridConfig(nx=5, ny=6, mask=ok).has_land()
    assert not GridConfig(nx=5, ny=6).has_land()
    np.testing.assert_array_equal(GridConfig(nx=5, ny=6).ocean_mask(), np.ones((6, 5)))
    with pytest.raises(ValueError, match="shape"):
        GridConfig(nx=6, ny=5, mask=ok)
    with pytest.raises(ValueError, match="0 .land. or 1"):
        GridConfig(nx=5, ny=6, mask=ok * 0.5)
    with pytest.raises(ValueError, match="no ocean cell"):
        GridConfig(nx=5, ny=6, mask=np.zeros((6, 5)))
    with pytest.raises(ValueError, match="NaN"):
        GridConfig(nx=5, ny=6, mask=np.where(ok > 0, 1.0, np.nan))


def test_mask_and_latitude_from_files(tmp_path):
    mask = np.ones((4, 6))
    mask[0, :3] = 0
    np.save(tmp_path / "mask.npy", mask)
    lat = np.linspace(70, 80, 24).reshape(4, 6)
    xr.Dataset({"mask": (("y", "x"), mask), "lat": (("y", "x"), lat)}).to_netcdf(tmp_path / "grid.nc")
    g = GridConfig(nx=6, ny=4, mask=str(tmp_path / "mask.npy"), latitude=str(tmp_path / "grid.nc"))
    np.testing.assert_array_equal(g.ocean_mask(), mask)
    np.testing.assert_allclose(g.coriolis_field(1.46e-4), 2 * EARTH_ROTATION * np.sin(np.deg2rad(lat)))
    assert GridConfig(nx=6, ny=4, mask=str(tmp_path / "grid.nc")).has_land()
    with pytest.raises(ValueError, match="not found"):
        GridConfig(nx=6, ny=4, mask=str(tmp_path / "missing.npy"))
    with pytest.raises(ValueError, match="outside"):
        GridConfig(nx=6, ny=4, latitude=lat + 20)


def test_constant_coriolis_without_latitudes_and_yaml_round_trip():
    mask = np.ones((4, 4))
    mask[0, 0] = 0
    g = GridConfig(nx=4, ny=4, mask=mask, latitude=np.full((4, 4), 80.0))
    text = yaml.safe_dump(g.model_dump(mode="json"))
    again = GridConfig(**yaml.safe_load(text))
    np.testing.assert_array_equal(again.ocean_mask(), g.ocean_mask())
    assert np.all(GridConfig(nx=4, ny=4).coriolis_field(1.46e-4) == 1.46e-4)


def test_refined_grid_repeats_the_mask_and_interpolates_latitudes():
    mask = np.ones((4, 4))
    mask[1, 2] = 0
    lat = np.add.outer(np.arange(4.0), 0.5 * np.arange(4.0)) + 70.0  # linear: interpolation is exact
    fine = GridConfig(nx=4, ny=4, mask=mask, latitude=lat).refined(2)
    assert (fine.nx, fine.ny, fine.dx) == (8, 8, 8000.0)
    np.testing.assert_array_equal(fine.ocean_mask(), np.kron(mask, np.ones((2, 2))))
    y, x = np.mgrid[0:8, 0:8]
    np.testing.assert_allclose(fine.latitudes(), 70.0 + (y + 0.5) / 2 - 0.5 + 0.5 * ((x + 0.5) / 2 - 0.5))
    np.testing.assert_allclose(refine_linear(lat, 2).reshape(4, 2, 4, 2).mean(axis=(1, 3)), lat)
