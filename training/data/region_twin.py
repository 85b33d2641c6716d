"""The twin experiment's two grids on a real region (`TwinConfig.region`): the truth grid `r` times finer than the
coarse grid, with masks that obey the coarse-graining rule exactly.

    RegionGrid (25 km) -> fine RegionGrid (25/r km) -> fine mask from the coastline data
                       -> coarse mask = coarse_ocean_mask(fine mask, r) (at least half of the r x r cells ocean)

Both masks are cleaned with the rule of `training.data.geography` (closed frame, dead ends filled, main water body
only), and a fine cell in a block that is land on the coarse grid becomes land, repeatedly until nothing changes.
Then `coarse_ocean_mask(fine, r)` gives the coarse mask back and no truth ice lives in a block the coarse model
cannot hold (coarsen_state would drop it). Latitudes (Coriolis f) are the fine and coarse grids' own cell centres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fortran_stub.config import GridConfig
from training.data.coarsegrain import coarse_ocean_mask
from training.data.geography import Geography, RegionGrid, fill_dead_ends, keep_water_body


class GivenMaskGeography(Geography):
    """A Geography whose ocean mask (1 = ocean, float64) is given instead of built from the coastline data."""

    mask = None  # shadows Geography's cached mask property: the instance attribute set below is the mask

    def __init__(self, region: RegionGrid, mask: np.ndarray):
        super().__init__(region)
        mask = np.asarray(mask, dtype=np.float64)
        if mask.shape != region.shape:
            raise ValueError(f"mask shape {mask.shape} is not the {region.name} grid {region.shape}")
        self.mask = mask


def fine_region(region: RegionGrid, r: int) -> RegionGrid:
    """The same region at `r` times finer cells; coastline samples per cell reduced so their spacing stays."""
    return region.model_copy(update={"resolution_km": region.resolution_km / r,
                                     "supersample": max(1, region.supersample // r)})


def clean_mask(ocean: np.ndarray) -> np.ndarray:
    """Closed frame, dead ends filled, the water body holding the centre cell only (bool (ny, nx))."""
    ocean = np.asarray(ocean, dtype=bool).copy()
    ocean[0, :] = ocean[-1, :] = ocean[:, 0] = ocean[:, -1] = False
    ocean = fill_dead_ends(ocean)
    ny, nx = ocean.shape
    return keep_water_body(ocean, ny // 2, nx // 2)


def consistent_masks(fine_ocean: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(fine, coarse) float64 masks (1 = ocean) from a raw fine ocean flag (bool, (r·ny, r·nx)): both cleaned,
    fine cells in coarse-land blocks made land, until stable; then coarse == coarse_ocean_mask(fine, r)."""
    fine = clean_mask(fine_ocean)
    while True:
        coarse = clean_mask(coarse_ocean_mask(fine, r) > 0.5)
        new = clean_mask(fine & np.kron(coarse, np.ones((r, r), dtype=bool)))
        if np.array_equal(new, fine) and np.array_equal(coarse_ocean_mask(new, r) > 0.5, coarse):
            return new.astype(np.float64), coarse.astype(np.float64)
        fine = new  # cells only ever turn from ocean into land: this ends


@dataclass(frozen=True)
class TwinGrids:
    """The coarse and truth grids of a regional twin: model configs (mask, latitude) and geographies."""

    coarse: GridConfig
    fine: GridConfig
    coarse_geo: Geography | None = None  # None: the closed box (no geography)
    fine_geo: Geography | None = None


def region_twin_grids(region: RegionGrid, r: int, fine_ocean: np.ndarray | None = None) -> TwinGrids:
    """The grids of the twin on `region` with refinement `r`. `fine_ocean` (bool, fine shape): the raw ocean flag
    (default: the coastline data's ocean fraction on the fine grid >= the region's threshold)."""
    fine_reg = fine_region(region, r)
    ny, nx = region.shape
    if fine_reg.shape != (ny * r, nx * r):
        raise ValueError(f"region {region.name}: size_km {region.size_km} is not a whole number of "
                         f"{fine_reg.resolution_km} km truth cells ({fine_reg.shape} != {(ny * r, nx * r)})")
    if fine_ocean is None:
        fine_ocean = Geography(fine_reg).raw_ocean  # the coastline data's ocean flag, walls closed
    fine_mask, coarse_mask = consistent_masks(fine_ocean, r)
    coarse_geo = GivenMaskGeography(region, coarse_mask)
    fine_geo = GivenMaskGeography(fine_reg, fine_mask)
    coarse = GridConfig(nx=nx, ny=ny, dx=region.dx, mask=coarse_mask, latitude=coarse_geo.lat)
    fine = GridConfig(nx=nx * r, ny=ny * r, dx=region.dx / r, mask=fine_mask, latitude=fine_geo.lat)
    return TwinGrids(coarse, fine, coarse_geo, fine_geo)
