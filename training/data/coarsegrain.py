"""Coarse-graining C (fine truth grid → coarse model grid) and its right inverse `refine` (physics.md §2.4).

Pure numpy on arrays shaped (…, y, x) (any leading dims: time, member, …) and on xarray Datasets of state
variables. The refinement factor `r` must divide the fine grid size. Public functions:

* `block_mean(a, r)`                       plain r×r block mean of a cell-centred field
* `coarsen_u(u, r)`, `coarsen_v(v, r)`      C-grid face means (east faces for u, north faces for v)
* `cgrid_divergence(u, v, dx)`              ∂u/∂x + ∂v/∂y at cell centres with closed walls (s-1)
* `coarsen_state(state, r, mask=None)`      fine state (mapping or Dataset) → coarse CF state variables
* `coarse_ocean_mask(mask, r)`              the coarse land/ocean mask derived from the fine one
* `coarsen_forcing(forcing, r)`             block means of every forcing field
* `refine_centre(a, r)`, `refine_u(u, r)`, `refine_v(v, r)`, `refine_state(state, r)`
                                            prolongation with C ∘ refine = identity (exact)

Choices (why):
* A, V = A·h and Vs = A·hs are block means, so total ice and snow volume is conserved exactly; h = V/A afterwards.
* A coarse face velocity is the mean of the r fine face velocities lying on it, so coarse face fluxes are sums of
  fine ones and, by Gauss, the coarse divergence equals the block mean of the fine divergence.
* Damage is averaged with weight A (open water carries no damage information); surface temperature likewise.
* Stresses are plain block means of the vertically integrated stress (conserves the net force on the block).
* Land: a coarse cell is ocean if at least half of its r×r fine cells are ocean (`coarse_ocean_mask`; the rule of
  geography.md for building a mask from finer data, threshold 0.5). A mask refined by repetition
  (`GridConfig.refined`) comes back unchanged. With the fine `mask` given, every coarse-grained field is 0 on coarse
  land and siu/siv are 0 on coarse faces touching it (what the coarse model holds there). Fine land cells hold no
  ice, so on coarse ocean cells the block means are the ice per coarse-cell area (land counts as ice-free); fine ice
  in a block that becomes coarse land (under half ocean) is dropped, the only place volume is not conserved.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

try:  # xarray is optional for the array functions
    import xarray as xr
except ImportError:  # pragma: no cover
    xr = None

__all__ = [
    "block_mean", "coarsen_u", "coarsen_v", "cgrid_divergence", "coarsen_state", "coarsen_forcing",
    "coarse_ocean_mask",
    "refine_centre", "refine_u", "refine_v", "refine_state",
]

#: concentration below which a cell counts as ice-free when forming h = V/A (same as the models' minimum)
A_EMPTY = 1e-12

#: variables averaged with weight A (intensive properties of the ice-covered part)
_ICE_WEIGHTED = ("damage", "tsi")
#: variables that are plain cell-centre block means
_PLAIN = ("sic", "sivol", "snvol", "tos", "sig1", "sig2", "sig11", "sig22", "cohesion", "dmin")
#: corner stress: block mean too (see module docstring)
_CORNER = ("sig12",)


def _check(a: np.ndarray, r: int, name: str = "field") -> np.ndarray:
    a = np.asarray(a)
    if a.ndim < 2:
        raise ValueError(f"{name}: need an array shaped (..., y, x), got shape {a.shape}")
    if r < 1 or a.shape[-1] % r or a.shape[-2] % r:
        raise ValueError(f"{name}: grid {a.shape[-2:]} is not divisible by the refinement factor {r}")
    return a


def block_mean(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over r×r blocks of the last two axes: (…, r·ny, r·nx) → (…, ny, nx)."""
    a = _check(a, r)
    ny, nx = a.shape[-2] // r, a.shape[-1] // r
    return a.reshape(a.shape[:-2] + (ny, r, nx, r)).mean(axis=(-3, -1))


def coarsen_u(u: np.ndarray, r: int) -> np.ndarray:
    """Coarse east-face x-velocity (m s-1): mean of the r fine east faces that make up each coarse east face."""
    u = _check(u, r, "siu")
    faces = u[..., :, r - 1::r]  # fine columns whose east face is a coarse east face
    ny = u.shape[-2] // r
    return faces.reshape(faces.shape[:-2] + (ny, r, faces.shape[-1])).mean(axis=-2)


def coarsen_v(v: np.ndarray, r: int) -> np.ndarray:
    """Coarse north-face y-velocity (m s-1): mean of the r fine north faces on each coarse north face."""
    v = _check(v, r, "siv")
    faces = v[..., r - 1::r, :]
    nx = v.shape[-1] // r
    return faces.reshape(faces.shape[:-1] + (nx, r)).mean(axis=-1)


def cgrid_divergence(u: np.ndarray, v: np.ndarray, dx: float) -> np.ndarray:
    """Divergence (s-1) at cell centres of C-grid face velocities; the west and south walls are 0."""
    u, v = np.asarray(u), np.asarray(v)
    du = np.diff(u, axis=-1, prepend=0.0)
    dv = np.diff(v, axis=-2, prepend=0.0)
    return (du + dv) / dx


def refine_centre(a: np.ndarray, r: int) -> np.ndarray:
    """Piecewise-constant prolongation of a cell-centred field: (…, ny, nx) → (…, r·ny, r·nx)."""
    a = np.asarray(a)
    return np.repeat(np.repeat(a, r, axis=-2), r, axis=-1)


def refine_u(u: np.ndarray, r: int) -> np.ndarray:
    """Fine east-face u from coarse east-face u: fine faces on a coarse face copy it, interior faces interpolate
    linearly between the coarse west and east faces (so the fine divergence is uniform inside each block)."""
    u = np.asarray(u)
    west = np.concatenate([np.zeros_like(u[..., :1]), u[..., :-1]], axis=-1)  # west wall is implicit 0
    w = (np.arange(1, r + 1) / r)  # position of fine east face k inside the block, in units of the block width
    fine_x = west[..., None] * (1.0 - w) + u[..., None] * w  # (…, ny, nx, r)
    fine_x = fine_x.reshape(u.shape[:-1] + (u.shape[-1] * r,))
    return np.repeat(fine_x, r, axis=-2)


def refine_v(v: np.ndarray, r: int) -> np.ndarray:
    """Fine north-face v from coarse north-face v (the transpose of `refine_u`)."""
    v = np.asarray(v)
    return np.swapaxes(refine_u(np.swapaxes(v, -1, -2), r), -1, -2)


def _as_arrays(state) -> dict[str, np.ndarray]:
    if xr is not None and isinstance(state, xr.Dataset):
        return {k: np.asarray(state[k].values) for k in state.data_vars if state[k].dims[-2:] == ("y", "x")}
    return {k: np.asarray(v) for k, v in state.items()}


def _volumes(s: Mapping[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Ice and snow volume per area (m) from `sivol`/`snvol` or else from sit·sic / snt·sic."""
    a = s.get("sic")
    vol = s.get("sivol")
    if vol is None and "sit" in s and a is not None:
        vol = s["sit"] * a
    svol = s.get("snvol")
    if svol is None and "snt" in s and a is not None:
        svol = s["snt"] * a
    return vol, svol


def _thickness(vol: np.ndarray, a: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > A_EMPTY, vol / np.where(a > A_EMPTY, a, 1.0), 0.0)


def coarse_ocean_mask(mask: np.ndarray, r: int) -> np.ndarray:
    """Coarse (ny, nx) ocean mask (1 ocean, 0 land) from the fine (r·ny, r·nx) one: ocean where at least half of
    the r×r fine cells are ocean."""
    return (block_mean((np.asarray(mask) > 0.5).astype(np.float64), r) >= 0.5).astype(np.float64)


def _apply_coarse_land(out: dict[str, np.ndarray], ocean: np.ndarray) -> None:
    """Every field 0 on coarse land cells, siu/siv 0 on the coarse faces touching land (in place)."""
    oc = ocean > 0.5
    east = np.zeros_like(oc)
    east[:, :-1] = oc[:, :-1] & oc[:, 1:]
    north = np.zeros_like(oc)
    north[:-1, :] = oc[:-1, :] & oc[1:, :]
    for name, val in out.items():
        keep = east if name == "siu" else north if name == "siv" else oc
        out[name] = np.where(keep, val, 0.0)


def coarsen_state(state, r: int, mask: np.ndarray | None = None):
    """Coarse-grain a fine state (mapping of (…, y, x) arrays, or a Dataset with dims (…, y, x)).

    Returns the same kind of object with CF state variables on the coarse grid: `sic`, `sivol`, `snvol`, `sit`,
    `snt` (when volumes are available), `siu`, `siv`, `damage`, `tsi`, `tos`, stresses and `cohesion` when present.
    `mask` (fine (y, x), 1 ocean, 0 land; optional): fields are 0 on the land of `coarse_ocean_mask(mask, r)` and
    velocities on the coarse faces touching it. Unknown variables raise a ValueError (a silently dropped field is
    worse than a clear error).
    """
    s = _as_arrays(state)
    out: dict[str, np.ndarray] = {}
    a_fine = s.get("sic")
    vol, svol = _volumes(s)
    if a_fine is not None:
        out["sic"] = block_mean(a_fine, r)
    if vol is not None:
        out["sivol"] = block_mean(vol, r)
        if "sic" in out:
            out["sit"] = _thickness(out["sivol"], out["sic"])
    if svol is not None:
        out["snvol"] = block_mean(svol, r)
        if "sic" in out:
            out["snt"] = _thickness(out["snvol"], out["sic"])
    if "siu" in s:
        out["siu"] = coarsen_u(s["siu"], r)
    if "siv" in s:
        out["siv"] = coarsen_v(s["siv"], r)
    for name in _ICE_WEIGHTED:
        if name in s:
            if a_fine is None:
                raise ValueError(f"{name}: A-weighted coarse-graining needs 'sic' in the state")
            wsum = block_mean(a_fine, r)
            num = block_mean(a_fine * s[name], r)
            # ice-free blocks: plain mean, so that the field stays defined everywhere
            out[name] = np.where(wsum > A_EMPTY, num / np.where(wsum > A_EMPTY, wsum, 1.0), block_mean(s[name], r))
    for name in _PLAIN + _CORNER:
        if name in s and name not in out:
            out[name] = block_mean(s[name], r)
    known = set(out) | {"sit", "snt"}
    unknown = sorted(set(s) - known)
    if unknown:
        raise ValueError(f"coarsen_state: no coarse-graining rule for variable(s) {unknown}")
    if mask is not None:
        _apply_coarse_land(out, coarse_ocean_mask(_check(mask, r, "mask"), r))
    if xr is not None and isinstance(state, xr.Dataset):
        return _to_dataset(out, state, r)
    return out


def coarsen_forcing(forcing, r: int):
    """Block means of every cell-centred forcing field (`uas`, `vas`, `tas`, …), mapping or Dataset."""
    f = _as_arrays(forcing)
    out = {k: block_mean(v, r) for k, v in f.items()}
    if xr is not None and isinstance(forcing, xr.Dataset):
        return _to_dataset(out, forcing, r)
    return out


def refine_state(state, r: int):
    """Prolongate a coarse state to the grid r times finer, such that `coarsen_state(refine_state(s, r), r) == s`.

    A, V, Vs, damage, temperatures and stresses are piecewise constant; velocities use `refine_u`/`refine_v`
    (continuous across blocks, exact on coarse faces). Thicknesses are rebuilt from the refined volumes.
    """
    s = _as_arrays(state)
    out: dict[str, np.ndarray] = {}
    vol, svol = _volumes(s)
    for name, val in s.items():
        if name == "siu":
            out[name] = refine_u(val, r)
        elif name == "siv":
            out[name] = refine_v(val, r)
        elif name in ("sit", "snt", "sivol", "snvol"):
            continue  # rebuilt from the volumes below
        else:
            out[name] = refine_centre(val, r)
    if vol is not None:
        out["sivol"] = refine_centre(vol, r)
        if "sic" in out:
            out["sit"] = _thickness(out["sivol"], out["sic"])
    if svol is not None:
        out["snvol"] = refine_centre(svol, r)
        if "sic" in out:
            out["snt"] = _thickness(out["snvol"], out["sic"])
    if xr is not None and isinstance(state, xr.Dataset):
        return _to_dataset(out, state, 1.0 / r)
    return out


def _to_dataset(out: Mapping[str, np.ndarray], like, r: float):
    """Wrap arrays as a Dataset with the leading dims/coords of `like` and x, y cell-centre coordinates (m)."""
    first = next(iter(like.data_vars.values()))
    lead = first.dims[:-2]
    coords = {d: like.coords[d] for d in lead if d in like.coords}
    ds = xr.Dataset(coords=coords, attrs=dict(like.attrs))
    for name, val in out.items():
        attrs = dict(like[name].attrs) if name in like.data_vars else {}
        ds[name] = (lead + ("y", "x"), val, attrs)
    ny, nx = next(iter(out.values())).shape[-2:]
    dx = _grid_dx(like)
    if dx is not None:
        dxc = dx * r
        ds = ds.assign_coords(x=("x", (np.arange(nx) + 0.5) * dxc, {"units": "m"}),
                              y=("y", (np.arange(ny) + 0.5) * dxc, {"units": "m"}))
        if "grid_dx" in ds.attrs:
            ds.attrs["grid_dx"] = dxc
    return ds


def _grid_dx(ds) -> float | None:
    if "x" in ds.coords and ds.sizes.get("x", 0) > 1:
        return float(ds["x"].values[1] - ds["x"].values[0])
    if "grid_dx" in ds.attrs:
        return float(ds.attrs["grid_dx"])
    return None
