"""Physical bounds of a corrected state, with counts of how often each clip fired.

sic ∈ [0, 1]; sit ≥ 0; snt ≥ 0; no ice area without volume (sic = 0 where sit = 0) and no volume without area
(sit = snt = 0 where sic = 0); damage ∈ [0, 1] if present. Velocities: 0 on a C-grid face with no ice on either side
(the coarse model keeps u = 0 on faces without ice mass, so a zero correction leaves its states unchanged; a
correction there would be a velocity of nothing, which a later step turns into ice moving at many m/s when
concentration returns). `zero_walls` enforces the closed walls (last siu column, last siv row) and faces touching
land. Without clipping, deterministic rollouts leave the physical range within days (Finn et al. 2024,
fig. B1), so every corrected state goes through `apply_bounds`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np


def _check_finite(name: str, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"field '{name}': {bad} non-finite value(s) (NaN/inf) before applying bounds")


def apply_bounds(fields: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Return (bounded copies of all fields, counts) — counts[name] = number of values changed for that field.

    Fields not named above pass through (copied). Raises ValueError naming a field with NaN/inf.
    """
    out = {k: np.array(v, copy=True) for k, v in fields.items()}
    counts: dict[str, int] = {}
    for name in ("sic", "sit", "snt", "damage"):
        if name in out:
            _check_finite(name, out[name])

    def clip(name: str, lo: float | None, hi: float | None) -> None:
        if name not in out:
            return
        a = out[name]
        bad = np.zeros(a.shape, bool)
        if lo is not None:
            bad |= a < lo
        if hi is not None:
            bad |= a > hi
        counts[name] = int(np.count_nonzero(bad))
        if counts[name]:
            np.clip(a, lo, hi, out=a)

    clip("sic", 0.0, 1.0)
    clip("sit", 0.0, None)
    clip("snt", 0.0, None)
    clip("damage", 0.0, 1.0)
    if "sic" in out and "sit" in out:
        no_volume = (out["sit"] <= 0.0) & (out["sic"] > 0.0)
        counts["sic_without_volume"] = int(np.count_nonzero(no_volume))
        out["sic"][no_volume] = 0.0
    if "sic" in out:
        no_ice = out["sic"] <= 0.0
        for name in ("sit", "snt"):
            if name in out:
                a = out[name]
                fired = no_ice & (a != 0.0)
                n = int(np.count_nonzero(fired))
                if n:
                    a[fired] = 0.0
                counts[f"{name}_without_ice"] = n
        for name, east in (("siu", True), ("siv", False)):
            if name in out:
                a = out[name]
                fired = ice_free_faces(no_ice, east=east) & (a != 0.0)
                counts[f"{name}_without_ice"] = int(np.count_nonzero(fired))
                a[fired] = 0.0
    return out, counts


def ice_free_faces(no_ice: np.ndarray, east: bool) -> np.ndarray:
    """(…, ny, nx) bool: the east (east=True) or north face of each cell has no ice on either side; the faces on the
    east/north edge have one side only."""
    other = np.ones_like(no_ice)
    if east:
        other[..., :-1] = no_ice[..., 1:]
    else:
        other[..., :-1, :] = no_ice[..., 1:, :]
    return no_ice & other


#: below this forecast concentration the diagnosed thickness V/A of the coarse model is ill-conditioned (tiny A with
#: disproportionate V after transport: sit of 10³–10⁶ m were seen in year-long runs); such a thickness is not used
#: as the base of a correction, or a correction that raises sic there creates ice volume from nothing
THIN_FORECAST_SIC = 1e-3


def guard_thin_forecast(base: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """The residual-mode base with `sit`/`snt` set to 0 where the forecast `sic` < THIN_FORECAST_SIC, and the number
    of values this changed (sit/snt that were non-zero there). The volume given up is < 1e-3 · sit per cell."""
    out = dict(base)
    if "sic" not in base:
        return out, 0
    thin = np.asarray(base["sic"]) < THIN_FORECAST_SIC
    fired = 0
    for v in ("sit", "snt"):
        if v in base:
            a = np.asarray(base[v])
            hit = thin & (a != 0.0)
            if hit.any():
                fired += int(np.count_nonzero(hit))
                out[v] = np.where(thin, 0.0, a)
    return out, fired


def zero_walls(fields: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> tuple[dict, dict[str, int]]:
    """Zero C-grid velocities on closed walls and on faces touching land; return (copies, counts of changed values).

    siu(…, j, i) sits on the east face of cell (j, i): the last column is the east wall, and a face is closed if
    either neighbour is land. siv(…, j, i) sits on the north face: last row = north wall.
    `mask` (ny, nx): 1 = ocean.
    """
    out = {k: np.array(v, copy=True) for k, v in fields.items()}
    counts: dict[str, int] = {}
    for name, axis in (("siu", -1), ("siv", -2)):
        if name not in out:
            continue
        a = out[name]
        ny, nx = a.shape[-2:]
        closed = np.zeros((ny, nx), bool)
        if axis == -1:
            closed[:, -1] = True
        else:
            closed[-1, :] = True
        if mask is not None:
            land = np.asarray(mask) < 0.5
            if land.shape != (ny, nx):
                raise ValueError(f"field 'mask': shape {land.shape}, expected ({ny}, {nx})")
            closed |= land
            if axis == -1:
                closed[:, :-1] |= land[:, 1:]
            else:
                closed[:-1, :] |= land[1:, :]
        closed_b = np.broadcast_to(closed, a.shape)
        counts[f"{name}_walls"] = int(np.count_nonzero(closed_b & (a != 0.0)))
        a[closed_b] = 0.0
    return out, counts
