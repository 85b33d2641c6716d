"""A regional model grid on real geography: a square-cell grid on the NSIDC polar stereographic projection
(EPSG:3413) given by a centre, a size and a resolution, with the land/ocean mask from a real coastline data set.

    RegionGrid (config)  ->  Geography (arrays)  ->  attach_geography(ds, geo): lat/lon, x/y, grid_mapping on a file

Conventions (those of the models): arrays are (ny, nx), row j is y = y0 + (j + ½) Δ increasing with j, column i is
x = x0 + (i + ½) Δ. x and y are EPSG:3413 coordinates (m). Their "up" (+y) is not geographic north: grid north
differs from true north by the meridian convergence, lon + 45° (`grid_north_angle`), so vectors in files built on
this grid (winds, currents, ice velocity) are grid-relative x/y components, not eastward/northward ones.

Mask (1 = ocean, 0 = land; float64), built by `ocean_mask` in four steps:
1. ocean fraction of each cell from `supersample` × `supersample` points of the GLOBE 30″ ocean flag
   (`global-land-mask`, lakes count as land), ocean where the fraction is >= `ocean_threshold` (0.5): a cell-centre
   sample alone would let a narrow spit or strait decide a 25 km cell;
2. a closed frame: the outer ring of cells is land. Where the real sea continues past the frame (e.g. Hudson
   Strait, Foxe Channel) this is a wall: the stated simplification of a closed regional box; the region's
   `walls` (polylines, e.g. Fram Strait on the Arctic grid) close straits inside the frame the same way;
3. dead ends filled, repeatedly: an ocean cell with at most one ocean neighbour across its four faces (an isolated
   cell or the end of a one-cell-wide inlet) becomes land. Such cells trap ice that grows spuriously thick (MOM6 #59);
   one-cell-wide channels between two water bodies stay (a C-grid moves ice through them);
4. only the water body that holds the region's centre is kept (4-connected: ice crosses cell faces, not corners);
   detached lakes, fjords and seas behind the frame become land.
"""
from __future__ import annotations

from functools import cached_property
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import Field, model_validator
from pyproj import CRS, Transformer
from scipy import ndimage

from icecorr.base.config import StrictConfig

EPSG_PROJECTED = 3413  # NSIDC Sea Ice Polar Stereographic North (WGS 84)
EPSG_GEOGRAPHIC = 4326
EARTH_ROTATION = 7.2921159e-5  # s-1 (angular speed of the Earth, IERS)
GRID_MAPPING_NAME = "polar_stereographic"
#: CF attributes of EPSG:3413 (pyproj's to_cf() omits latitude_of_projection_origin for this variant: pyproj #856)
GRID_MAPPING_ATTRS: dict[str, object] = {
    "grid_mapping_name": "polar_stereographic",
    "straight_vertical_longitude_from_pole": -45.0,
    "standard_parallel": 70.0,
    "latitude_of_projection_origin": 90.0,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "semi_major_axis": 6378137.0,
    "inverse_flattening": 298.257223563,
    "longitude_of_prime_meridian": 0.0,
}


class Landmark(StrictConfig):
    """A named point whose surface is known (e.g. an island's centre, the middle of a bay), to check a mask."""

    name: str
    lon: float = Field(..., ge=-180, le=180, description="degrees east")
    lat: float = Field(..., ge=-90, le=90, description="degrees north")
    surface: Literal["land", "ocean"]


class Wall(StrictConfig):
    """A closed strait: a polyline of (lon, lat) points (degrees); every cell it crosses is land before the mask is
    cleaned (e.g. Fram Strait, the Barents Sea opening, Bering Strait on the Arctic grid). The crossed cells form
    an 8-connected chain, which 4-connected ocean (ice moves across faces) cannot pass."""

    name: str
    points: list[tuple[float, float]] = Field(..., min_length=2, description="(lon, lat) vertices in degrees")


class RegionGrid(StrictConfig):
    """A rectangular regional grid on EPSG:3413: centre (lon, lat), size (km along x, y) and cell size (km)."""

    name: str = Field(..., pattern=r"^[a-z0-9_]+$", description="region name (file and figure names)")
    centre_lon: float = Field(..., ge=-180, le=180, description="longitude of the grid centre (degrees east)")
    centre_lat: float = Field(..., gt=30, le=90, description="latitude of the grid centre (degrees north)")
    size_km: tuple[float, float] = Field(..., description="extent along x and y (km); rounded to whole cells")
    resolution_km: float = Field(..., gt=0, description="cell size Δ (km), the same along x and y")
    supersample: int = Field(8, ge=1, le=64, description="mask samples per cell along each axis")
    ocean_threshold: float = Field(0.5, gt=0, le=1, description="ocean fraction at or above which a cell is ocean")
    landmarks: list[Landmark] = Field(default_factory=list, description="known points the mask must get right "
                                                                         "(tests, the region's map)")
    walls: list[Wall] = Field(default_factory=list, description="closed straits: cells on these lines are land")

    @model_validator(mode="after")
    def _at_least_four_cells(self) -> "RegionGrid":
        if min(self.shape) < 4:
            raise ValueError(f"size_km {self.size_km} at {self.resolution_km} km gives {self.shape} cells: "
                             "need at least 4 along each axis")
        return self

    @property
    def dx(self) -> float:
        """Cell size (m)."""
        return self.resolution_km * 1e3

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx): the size rounded to whole cells."""
        return (int(round(self.size_km[1] / self.resolution_km)), int(round(self.size_km[0] / self.resolution_km)))


def transformer(inverse: bool = False):
    """pyproj Transformer lon/lat (EPSG:4326, degrees) -> EPSG:3413 x/y (m), or back if `inverse`; x/y order."""
    src, dst = (EPSG_PROJECTED, EPSG_GEOGRAPHIC) if inverse else (EPSG_GEOGRAPHIC, EPSG_PROJECTED)
    return Transformer.from_crs(src, dst, always_xy=True)


def crs_wkt() -> str:
    """The WKT2 text of EPSG:3413 (the CF `crs_wkt` attribute)."""
    return CRS.from_epsg(EPSG_PROJECTED).to_wkt()


def is_ocean(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The GLOBE 30″ ocean flag (`global-land-mask`) at points (degrees; lon wrapped to [-180, 180)). The first call
    loads the 21600 × 43200 global grid (~3 s, ~0.9 GiB) and keeps it for the process."""
    from global_land_mask import globe  # heavy: loaded on first use only

    lon = (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0
    return globe.is_ocean(np.asarray(lat, dtype=np.float64), lon)


def grid_north_angle(lon: np.ndarray) -> np.ndarray:
    """Angle (degrees, clockwise) from grid +y to geographic north at longitude `lon` on EPSG:3413: −(lon + 45°)
    wrapped to [−180, 180); e.g. +40° at 85°W, where true north points 40° to the right of +y."""
    a = -(np.asarray(lon, dtype=np.float64) + 45.0)
    return (a + 180.0) % 360.0 - 180.0 if np.ndim(a) else float((a + 180.0) % 360.0 - 180.0)


def coriolis_parameter(lat: np.ndarray) -> np.ndarray:
    """f = 2 Ω sin φ (s-1) at latitude φ (degrees)."""
    return 2.0 * EARTH_ROTATION * np.sin(np.deg2rad(lat))


def fill_dead_ends(ocean: np.ndarray) -> np.ndarray:
    """Ocean cells with at most one ocean neighbour across their four faces become land, repeatedly (step 3 of
    the module's mask rule); returns a new boolean array."""
    ocean = np.asarray(ocean, dtype=bool).copy()
    while True:
        p = np.pad(ocean, 1)
        neighbours = p[:-2, 1:-1].astype(int) + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
        dead = ocean & (neighbours <= 1)
        if not dead.any():
            return ocean
        ocean[dead] = False


def keep_water_body(ocean: np.ndarray, j: int, i: int) -> np.ndarray:
    """Only the 4-connected ocean component holding cell (j, i); ValueError if that cell is land."""
    labels, _ = ndimage.label(ocean)  # default structure: 4-connectivity
    if labels[j, i] == 0:
        raise ValueError(f"the region's centre cell (j={j}, i={i}) is land after cleaning: move the centre onto the "
                         "main water body")
    return labels == labels[j, i]


class Geography:
    """The arrays of a RegionGrid: x, y (m, 1-D), lon, lat (degrees, (ny, nx)), the cleaned ocean mask (1 = ocean,
    float64), the raw ocean fraction, the Coriolis parameter f (s-1) and the grid-north angle (degrees)."""

    def __init__(self, region: RegionGrid):
        self.region = region
        ny, nx = region.shape
        dx = region.dx
        xc, yc = transformer().transform(region.centre_lon, region.centre_lat)
        #: lower-left corner of the grid (m): the centre is the middle of the grid
        self.x0, self.y0 = float(xc) - nx * dx / 2.0, float(yc) - ny * dx / 2.0
        self.x = self.x0 + (np.arange(nx) + 0.5) * dx
        self.y = self.y0 + (np.arange(ny) + 0.5) * dx
        xx, yy = np.meshgrid(self.x, self.y)
        lon, lat = transformer(inverse=True).transform(xx, yy)
        self.lon, self.lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return self.region.shape

    def cell_of(self, lon: float, lat: float) -> tuple[int, int]:
        """(j, i) of the cell holding the point (degrees); ValueError outside the grid."""
        x, y = transformer().transform(lon, lat)
        i = int(np.floor((x - self.x0) / self.region.dx))
        j = int(np.floor((y - self.y0) / self.region.dx))
        ny, nx = self.shape
        if not (0 <= i < nx and 0 <= j < ny):
            raise ValueError(f"({lat}°N, {lon}°E) is outside the {self.region.name} grid")
        return j, i

    @cached_property
    def ocean_fraction(self) -> np.ndarray:
        """Share of the `supersample`² sample points of each cell that the coastline data call ocean, (ny, nx)."""
        n, dx = self.region.supersample, self.region.dx
        offsets = (np.arange(n) + 0.5) / n * dx - dx / 2.0
        xs = (self.x[:, None] + offsets[None, :]).ravel()
        ys = (self.y[:, None] + offsets[None, :]).ravel()
        xx, yy = np.meshgrid(xs, ys)
        lon, lat = transformer(inverse=True).transform(xx, yy)
        ny, nx = self.shape
        flags = is_ocean(lat, lon).reshape(ny, n, nx, n)
        return flags.mean(axis=(1, 3))

    def wall_cells(self) -> np.ndarray:
        """Cells crossed by the region's walls (bool (ny, nx)): each segment sampled every quarter cell in x/y."""
        out = np.zeros(self.shape, dtype=bool)
        fwd = transformer()
        ny, nx = self.shape
        for wall in self.region.walls:
            xs, ys = fwd.transform(*np.array(wall.points, dtype=np.float64).T)
            for (xa, ya), (xb, yb) in zip(zip(xs[:-1], ys[:-1]), zip(xs[1:], ys[1:])):
                n = int(np.ceil(4 * np.hypot(xb - xa, yb - ya) / self.region.dx)) + 1
                t = np.linspace(0.0, 1.0, n)
                i = np.floor((xa + t * (xb - xa) - self.x0) / self.region.dx).astype(int)
                j = np.floor((ya + t * (yb - ya) - self.y0) / self.region.dx).astype(int)
                inside = (i >= 0) & (i < nx) & (j >= 0) & (j < ny)
                out[j[inside], i[inside]] = True
        return out

    @property
    def raw_ocean(self) -> np.ndarray:
        """Step 1 of the mask rule plus the walls: ocean fraction >= threshold and not on a wall (bool (ny, nx))."""
        ocean = self.ocean_fraction >= self.region.ocean_threshold
        return ocean & ~self.wall_cells() if self.region.walls else ocean

    @cached_property
    def mask(self) -> np.ndarray:
        """Cleaned ocean mask (ny, nx), 1.0 = ocean, 0.0 = land (the module's four-step rule; walls are land)."""
        ocean = self.raw_ocean.copy()
        ocean[0, :] = ocean[-1, :] = ocean[:, 0] = ocean[:, -1] = False
        ocean = fill_dead_ends(ocean)
        ny, nx = self.shape
        return keep_water_body(ocean, ny // 2, nx // 2).astype(np.float64)

    @property
    def coriolis(self) -> np.ndarray:
        """Coriolis parameter f = 2Ω sin(lat) at cell centres (s-1), (ny, nx)."""
        return coriolis_parameter(self.lat)

    @property
    def north_angle(self) -> np.ndarray:
        """Angle from grid +y to true north at cell centres (degrees clockwise), (ny, nx)."""
        return grid_north_angle(self.lon)

    def ocean_share(self) -> float:
        """Fraction of the grid's cells that are ocean after cleaning."""
        return float(self.mask.mean())


def check_landmarks(geo: Geography) -> list[dict[str, object]]:
    """Each landmark of the region with its cell (j, i), the cell's surface in the mask and the coastline data's
    surface at the point itself: {name, lon, lat, j, i, expected, mask, data, ok} (ok: both agree with
    `expected`)."""
    out = []
    for mark in geo.region.landmarks:
        j, i = geo.cell_of(mark.lon, mark.lat)
        in_mask = "ocean" if geo.mask[j, i] > 0.5 else "land"
        in_data = "ocean" if bool(is_ocean(np.array(mark.lat), np.array(mark.lon))) else "land"
        out.append({**mark.model_dump(), "j": j, "i": i, "expected": mark.surface, "mask": in_mask,
                    "data": in_data, "ok": in_mask == in_data == mark.surface})
    return out


def grid_mapping_attrs() -> dict[str, object]:
    """CF attributes of the `polar_stereographic` grid-mapping variable, `crs_wkt` included."""
    return {**GRID_MAPPING_ATTRS, "crs_wkt": crs_wkt(), "epsg_code": f"EPSG:{EPSG_PROJECTED}"}


def attach_geography(ds: xr.Dataset, geo: Geography, with_fields: bool = True) -> xr.Dataset:
    """`ds` (xarray Dataset on the grid's (y, x)) with x/y projection coordinates, 2-D lat/lon coordinates, the
    `polar_stereographic` grid-mapping variable and `grid_mapping` on every (y, x) variable; with `with_fields`
    also `mask` (1 = ocean) and `coriolis_parameter` (s-1). Returns a new Dataset."""
    ny, nx = geo.shape
    if ds.sizes.get("y", ny) != ny or ds.sizes.get("x", nx) != nx:
        raise ValueError(f"dataset (y, x) = ({ds.sizes.get('y')}, {ds.sizes.get('x')}) is not the "
                         f"{geo.region.name} grid ({ny}, {nx})")
    out = ds.assign_coords(
        x=("x", geo.x, {"standard_name": "projection_x_coordinate", "long_name": "x of cell centre (EPSG:3413)",
                        "units": "m", "axis": "X"}),
        y=("y", geo.y, {"standard_name": "projection_y_coordinate", "long_name": "y of cell centre (EPSG:3413)",
                        "units": "m", "axis": "Y"}),
        lat=(("y", "x"), geo.lat, {"standard_name": "latitude", "long_name": "latitude of cell centre",
                                   "units": "degrees_north"}),
        lon=(("y", "x"), geo.lon, {"standard_name": "longitude", "long_name": "longitude of cell centre",
                                   "units": "degrees_east"}),
    )
    if with_fields:
        out["mask"] = (("y", "x"), geo.mask, {
            "long_name": "ocean mask (1 = ocean, 0 = land)", "units": "1",
            "flag_values": np.array([0, 1], dtype=np.int8),
            "flag_meanings": "land ocean", "source": "global-land-mask (GLOBE 30 arc-second ocean flag), "
            f"ocean fraction >= {geo.region.ocean_threshold} of {geo.region.supersample}^2 samples per cell, "
            "closed frame, dead ends filled, main water body only (training.data.geography)"})
        out["coriolis_parameter"] = (("y", "x"), geo.coriolis, {
            "standard_name": "coriolis_parameter", "long_name": "Coriolis parameter 2 Omega sin(lat)",
            "units": "s-1"})
    out[GRID_MAPPING_NAME] = ((), np.int32(0), grid_mapping_attrs())
    for name in out.data_vars:
        var = out.variables[name]
        if name != GRID_MAPPING_NAME and var.dims[-2:] == ("y", "x"):
            var.attrs["grid_mapping"] = GRID_MAPPING_NAME
    out.attrs.update({"region": geo.region.name, "region_grid": geo.region.model_dump_json(),
                      "grid_dx": geo.region.dx, "Conventions": out.attrs.get("Conventions", "CF-1.10")})
    return out


def geography_dataset(geo: Geography) -> xr.Dataset:
    """The grid alone as a CF Dataset: x/y, lat/lon, `mask`, `coriolis_parameter` and the grid mapping (float64)."""
    return attach_geography(xr.Dataset(), geo)
