"""The map of a regional grid (training.data.geography) as a PNG: the model's land/ocean mask, the coastline of the
data it was built from, grid lines, latitude/longitude lines, the region's landmarks (green where mask and
data agree with the expected surface, red otherwise) and the walls where the real sea continues (red squares).
Axes are EPSG:3413 x/y (km), as the model sees the grid.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
import numpy as np  # noqa: E402

from icecorr.base.files import atomic_path  # noqa: E402
from training.data.geography import Geography, check_landmarks, is_ocean, transformer  # noqa: E402

LAND_COLOUR, OCEAN_COLOUR = "#d8c9a3", "#b9d7ee"


def coastline_samples(geo: Geography, step_km: float = 2.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y (km, 1-D) and the coastline data's ocean flag (1/0, (len(y), len(x))) on a `step_km` lattice over
    the grid: the reference the mask is drawn against."""
    r = geo.region
    ny, nx = geo.shape
    xs = geo.x0 + np.arange(0.0, nx * r.dx, step_km * 1e3)
    ys = geo.y0 + np.arange(0.0, ny * r.dx, step_km * 1e3)
    xx, yy = np.meshgrid(xs, ys)
    lon, lat = transformer(inverse=True).transform(xx, yy)
    return xs / 1e3, ys / 1e3, is_ocean(lat, lon).astype(float)


def open_walls(geo: Geography) -> np.ndarray:
    """Cells of the outer ring (the closed frame) that the coastline data call ocean: where the real sea continues
    past the region's walls; boolean (ny, nx)."""
    ring = np.zeros(geo.shape, dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    return ring & (geo.ocean_fraction >= geo.region.ocean_threshold)


def plot_region_map(geo: Geography, path: str | Path, every: int = 10, step_km: float = 2.5) -> Path:
    """Draw the region's map (see the module docstring) with grid lines every `every` cells; write the PNG
    atomically and return its path."""
    path = Path(path)
    r = geo.region
    ny, nx = geo.shape
    xe = (geo.x0 + np.arange(nx + 1) * r.dx) / 1e3
    ye = (geo.y0 + np.arange(ny + 1) * r.dx) / 1e3
    fig, ax = plt.subplots(figsize=(7.5, 7.5 * (ny + 8) / (nx + 14)))
    ax.pcolormesh(xe, ye, geo.mask, cmap=ListedColormap([LAND_COLOUR, OCEAN_COLOUR]), vmin=0, vmax=1)
    cx, cy, flag = coastline_samples(geo, step_km)
    ax.contour(cx, cy, flag, levels=[0.5], colors="black", linewidths=0.5)
    for k in range(0, nx + 1, every):
        ax.axvline(xe[k], color="grey", lw=0.4, alpha=0.7)
    for k in range(0, ny + 1, every):
        ax.axhline(ye[k], color="grey", lw=0.4, alpha=0.7)
    xc, yc = geo.x / 1e3, geo.y / 1e3
    jw, iw = np.nonzero(open_walls(geo))
    ax.plot(xc[iw], yc[jw], "s", ms=3, mfc="none", mec="tab:red", mew=0.8)
    lat_levels = np.arange(np.ceil(geo.lat.min() / 2) * 2, geo.lat.max(), 2.0)
    lon_levels = np.arange(np.ceil(geo.lon.min() / 5) * 5, geo.lon.max(), 5.0)
    cs = ax.contour(xc, yc, geo.lat, levels=lat_levels, colors="tab:blue", linewidths=0.6, linestyles="--")
    ax.clabel(cs, fmt=lambda v: f"{v:.0f}°N", fontsize=7)
    cs = ax.contour(xc, yc, geo.lon, levels=lon_levels, colors="tab:purple", linewidths=0.6, linestyles="--")
    ax.clabel(cs, fmt=lambda v: f"{-v:.0f}°W" if v < 0 else f"{v:.0f}°E", fontsize=7)
    for mark in check_landmarks(geo):
        x, y = transformer().transform(mark["lon"], mark["lat"])
        ax.plot(x / 1e3, y / 1e3, "^" if mark["expected"] == "land" else "o", ms=6, mec="black",
                color="tab:green" if mark["ok"] else "tab:red")
        ax.annotate(mark["name"], (x / 1e3, y / 1e3), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_aspect("equal")
    ax.set_xlabel("x (km, EPSG:3413)")
    ax.set_ylabel("y (km, EPSG:3413)")
    ax.set_title(f"{r.name}: {ny} × {nx} cells of {r.resolution_km:g} km, ocean {geo.ocean_share():.0%} "
                 f"({int(geo.mask.sum())} cells)\nshading: model mask; black: coastline data (GLOBE 30″); "
                 f"grid lines every {every} cells;\n"
                 "red squares: walls (the closed outer ring) where the real sea continues", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
