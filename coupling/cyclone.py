"""The moving-cyclone benchmark (Mehlmann et al. 2021 as implemented in nextsimDG; physics.md §3) on the coarse model.

Box L = nx·dx by ny·dx (512 km by default), closed walls, A = 1, h = 0.3 + 0.005[sin(6e-5 x) + sin(3e-5 y)] m,
ice at rest and unstressed, no snow, no thermodynamics. Steady anticyclonic ocean gyre
u_w = 0.01 (2y/L − 1), v_w = 0.01 (1 − 2x/L) m s-1. Convergent cyclone whose centre starts at the box centre and
moves diagonally at 51.2 km day-1: with x' = x − c(t), r = |x'|, s = 1e-5 m-1 · exp(−r / 100 km),
u_a = −30 s (cos α x' + sin α y'), v_a = −30 s (−sin α x' + cos α y'), α = 72°; peak 30/e ≈ 11.04 m s-1 at r = 100 km.

The wind moves 2.1 km per hour, so the model runs in short windows (default 1 h) with the analytic forcing at both
ends of each window; 12 h windows would smear the storm along its track.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from fortran_stub.config import CoarsePhysicsConfig, GridConfig

from .bridge import CoarseModel
from icecorr.base.files import write_dataset_atomic
from icecorr.base.variables import FORCING_VARIABLES, attrs

CENTRE_SPEED = 51.2e3 / 86400.0   # m s-1, diagonal motion of the cyclone centre along x and along y
CYCLONE_RADIUS = 100e3            # m, e-folding radius R
CYCLONE_SCALE = 1e-5              # m-1, amplitude of s(r)
CYCLONE_V0 = 30.0                 # m s-1
CYCLONE_ANGLE = np.deg2rad(72.0)  # convergence angle alpha
OCEAN_SPEED = 0.01                # m s-1 at the walls
START = np.datetime64("2000-10-01T00:00:00", "s")
TIME_UNITS = "hours since 2000-10-01 00:00:00"


def cell_centres(grid: GridConfig) -> tuple[np.ndarray, np.ndarray]:
    """(ny, nx) arrays of the cell-centre coordinates x, y (m)."""
    x = (np.arange(grid.nx) + 0.5) * grid.dx
    y = (np.arange(grid.ny) + 0.5) * grid.dx
    return np.meshgrid(x, y)


def cyclone_centre(grid: GridConfig, t_seconds: float) -> tuple[float, float]:
    """Cyclone centre (m) at time t (s): the box centre plus 51.2 km day-1 along both axes."""
    return (0.5 * grid.nx * grid.dx + CENTRE_SPEED * t_seconds, 0.5 * grid.ny * grid.dx + CENTRE_SPEED * t_seconds)


def cyclone_forcing(grid: GridConfig, t_seconds: float) -> dict[str, np.ndarray]:
    """Analytic benchmark forcing at time t (s) at the cell centres, (ny, nx) float64 arrays, design.md names.

    uas, vas: cyclone wind (m s-1); uo, vo: ocean gyre (m s-1); the thermodynamic fields are inert placeholders
    (tas at the freezing point −1.8 °C, no radiation, humidity or snow): the benchmark has no thermodynamics.
    """
    xx, yy = cell_centres(grid)
    lx, ly = grid.nx * grid.dx, grid.ny * grid.dx
    cx, cy = cyclone_centre(grid, t_seconds)
    xp, yp = xx - cx, yy - cy
    s = CYCLONE_SCALE * np.exp(-np.hypot(xp, yp) / CYCLONE_RADIUS)
    ca, sa = np.cos(CYCLONE_ANGLE), np.sin(CYCLONE_ANGLE)
    out = {name: np.zeros_like(xx) for name in FORCING_VARIABLES}
    out["uas"] = -s * CYCLONE_V0 * (ca * xp + sa * yp)
    out["vas"] = -s * CYCLONE_V0 * (-sa * xp + ca * yp)
    out["uo"] = OCEAN_SPEED * (2.0 * yy / ly - 1.0)
    out["vo"] = OCEAN_SPEED * (1.0 - 2.0 * xx / lx)
    out["tas"] = np.full_like(xx, 273.15 - 1.8)
    return out


def initial_state(grid: GridConfig) -> dict[str, np.ndarray]:
    """Benchmark initial state (compact ice, 0.3 m with a small smooth perturbation), (ny, nx) arrays."""
    xx, yy = cell_centres(grid)
    return {"sic": np.ones_like(xx), "sit": 0.3 + 0.005 * (np.sin(6e-5 * xx) + np.sin(3e-5 * yy))}


def _record(model: CoarseModel) -> dict[str, np.ndarray]:
    st = model.get_state()
    div, shear = model.deformation()
    rec = {k: st[k].values for k in ("sic", "sit", "sivol", "siu", "siv", "sig1", "sig2", "sig12")}
    rec["divergence"], rec["shear"] = div, shear
    return rec


def _write_png(path: Path, grid: GridConfig, rec: dict[str, np.ndarray], hours: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ext = [0, grid.nx * grid.dx / 1e3, 0, grid.ny * grid.dx / 1e3]
    panels = [("sit", "thickness h (m)", "viridis", 1.0), ("sic", "concentration A", "Blues_r", 1.0),
              ("shear", "shear (day$^{-1}$)", "magma", 86400.0)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), constrained_layout=True)
    track = np.array([cyclone_centre(grid, t * 3600.0) for t in np.linspace(0.0, hours, 20)]) / 1e3
    for ax, (key, label, cmap, scale) in zip(axes, panels):
        im = ax.imshow(rec[key] * scale, origin="lower", extent=ext, cmap=cmap)
        ax.plot(track[:, 0], track[:, 1], "w--", lw=1)
        ax.set_title(label)
        ax.set_xlabel("x (km)")
        fig.colorbar(im, ax=ax, shrink=0.85)
    axes[0].set_ylabel("y (km)")
    fig.suptitle(f"Moving-cyclone benchmark, coarse mEVP-VP, {grid.nx}x{grid.ny} at {grid.dx / 1e3:g} km, "
                 f"t = {hours / 24:g} days")
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=90, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()


def run_cyclone(grid: GridConfig, physics: CoarsePhysicsConfig, out_dir: Path, days: float = 2.0,
                output_every_hours: float = 12, window_seconds: float = 3600.0) -> Path:
    """Run the benchmark for `days`, write `cyclone.nc` (CF, dims time, y, x) and `cyclone.png` (thickness,
    concentration and shear at the end) into `out_dir`; return the NetCDF path.

    Thermodynamics is switched off whatever `physics` says (the benchmark defines none). Each model call covers
    `window_seconds` (default 1 h) with the analytic forcing at both window ends; `output_every_hours` must be a
    multiple of the window.
    """
    out_dir = Path(out_dir)
    if days <= 0:
        raise ValueError(f"run_cyclone: days must be > 0, got {days}")
    n_windows = int(round(days * 86400.0 / window_seconds))
    every = output_every_hours * 3600.0 / window_seconds
    if n_windows < 1 or abs(every - round(every)) > 1e-9 or round(every) < 1:
        raise ValueError(f"run_cyclone: output_every_hours = {output_every_hours} must be a positive multiple of "
                         f"the window ({window_seconds / 3600:g} h), and days a multiple of the window")
    every = int(round(every))
    bench = physics.model_copy(update={"thermo_on": False})
    model = CoarseModel(grid, bench)
    model.set_state(initial_state(grid))

    records, hours = [_record(model)], [0.0]
    for k in range(n_windows):
        t0 = k * window_seconds
        model.step(cyclone_forcing(grid, t0), cyclone_forcing(grid, t0 + window_seconds), window_seconds)
        if (k + 1) % every == 0 or k + 1 == n_windows:
            records.append(_record(model))
            hours.append((k + 1) * window_seconds / 3600.0)
            bad = [name for name, a in records[-1].items() if not np.all(np.isfinite(a))]
            if bad:
                raise FloatingPointError(f"run_cyclone: non-finite {', '.join(bad)} at {hours[-1]:g} h")

    xx, yy = cell_centres(grid)
    times = START + np.array([np.timedelta64(int(round(h * 3600)), "s") for h in hours])
    data = {k: (("time", "y", "x"), np.stack([r[k] for r in records]), attrs(k)) for k in records[0]}
    ds = xr.Dataset(data, coords={"time": ("time", times, {"standard_name": "time", "long_name": "time"}),
                                  "x": ("x", xx[0], {"units": "m", "long_name": "x of the cell centre"}),
                                  "y": ("y", yy[:, 0], {"units": "m", "long_name": "y of the cell centre"})})
    ds.attrs.update({
        "Conventions": "CF-1.10",
        "title": "Moving-cyclone benchmark (Mehlmann et al. 2021) on the icecorr coarse mEVP-VP model",
        "producer": "coupling.cyclone.run_cyclone",
        "config": json.dumps({"grid": grid.model_dump(), "physics": bench.model_dump(),
                              "window_seconds": window_seconds}),
        "grid_dx": grid.dx,
        "last_mevp_residual": model.last_step_info.get("mevp_residual", float("nan")),
    })
    # no _FillValue on the coordinates (CF forbids it; xarray would add NaN to float ones)
    path = write_dataset_atomic(ds, out_dir / "cyclone.nc",
                                encoding={"time": {"units": TIME_UNITS, "calendar": "standard", "dtype": "f8",
                                                   "_FillValue": None},
                                          "x": {"_FillValue": None}, "y": {"_FillValue": None}})
    _write_png(out_dir / "cyclone.png", grid, records[-1], hours[-1])
    return path
