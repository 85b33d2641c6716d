"""Physical bounds of a corrected state: the rules once, with a NumPy face (counts of how often each rule fired) and
a differentiable torch face (4D-Var rollouts, `corrector.adjoint`).

The rules, in their order: each variable in `RANGES` is clipped to its range (sic ∈ [0, 1]; sit, snt ≥ 0; damage ∈
[0, 1]); no ice area without volume (sic = 0 unless sit > 0); no volume without area (sit = snt = 0 where sic = 0);
velocities 0 on a C-grid face with no ice on either side (the coarse model keeps u = 0 on faces without ice mass, so
a zero correction leaves its states unchanged; a correction there would be a velocity of nothing, which a later step
turns into ice moving at many m/s when concentration returns); velocities 0 on the closed walls (last siu column,
last siv row) and on faces touching land; no ice on land (sic, sit, snt 0 on land cells: the physical models hold
none there, docs/physics-land.md). Without clipping, deterministic rollouts leave the physical range within days
(Finn et al. 2024, fig. B1), so every corrected state goes through `zero_walls` and `apply_bounds` (`TorchBounds`
does both).
"""
from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from icecorr.base.variables import RANGES

#: the ice area, the ice volume (per unit area) it needs, and the amounts that exist only where there is ice area
AREA, VOLUME, ON_ICE = "sic", "sit", ("sit", "snt")
#: the C-grid velocities: True = on the east face of a cell (siu), False = on its north face (siv)
VELOCITY_ON_EAST_FACE = {"siu": True, "siv": False}


def ice_free_faces(no_ice, east: bool):
    """(…, ny, nx) bool: the east (east=True) or north face of each cell has no ice on either side; the faces on the
    east/north edge have one side only. `no_ice`: a bool NumPy array or torch tensor (…, ny, nx); same kind out."""
    free = no_ice.clone() if isinstance(no_ice, torch.Tensor) else no_ice.copy()  # edge faces: their own cell only
    if east:
        free[..., :-1] &= no_ice[..., 1:]
    else:
        free[..., :-1, :] &= no_ice[..., 1:, :]
    return free


def zeroing_rules(fields: Mapping) -> Iterator[tuple[str, str, object]]:
    """The rules that zero a variable, in their order, as (count name, variable, bool (…, ny, nx) where it must be 0).

    `fields`: {variable: NumPy array or torch tensor (…, ny, nx)}, already clipped to `RANGES`; each rule is
    computed from `fields` as left by the previous ones, so the caller applies a rule before asking for the next.
    """
    if AREA in fields and VOLUME in fields:
        yield f"{AREA}_without_volume", AREA, ~(fields[VOLUME] > 0)
    if AREA not in fields:
        return
    no_ice = fields[AREA] <= 0
    for name in ON_ICE:
        if name in fields:
            yield f"{name}_without_ice", name, no_ice
    for name, east in VELOCITY_ON_EAST_FACE.items():
        if name in fields:
            yield f"{name}_without_ice", name, ice_free_faces(no_ice, east)


def open_faces(mask: np.ndarray | None, ny: int, nx: int) -> dict[str, np.ndarray]:
    """{velocity: bool (ny, nx)}: False on the closed walls (east for siu, north for siv) and on faces with land on
    either side. mask (ny, nx): ocean where > 0.5; None = all ocean."""
    ocean = np.ones((ny, nx), bool) if mask is None else np.asarray(mask) > 0.5
    if ocean.shape != (ny, nx):
        raise ValueError(f"field 'mask': shape {ocean.shape}, expected ({ny}, {nx})")
    east = np.zeros((ny, nx), bool)
    east[:, :-1] = ocean[:, :-1] & ocean[:, 1:]
    north = np.zeros((ny, nx), bool)
    north[:-1, :] = ocean[:-1, :] & ocean[1:, :]
    return {name: east if on_east else north for name, on_east in VELOCITY_ON_EAST_FACE.items()}


# ----------------------------------------------------------------------------------------------------------------
# NumPy face
# ----------------------------------------------------------------------------------------------------------------

def _require_finite(name: str, a: np.ndarray) -> None:
    """Raise ValueError naming `name` and the number of NaN/inf values, if `a` has any."""
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"field '{name}': {bad} non-finite value(s) (NaN/inf) before applying bounds")


def apply_bounds(fields: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Return (bounded copies of all fields, counts) — counts[name] = number of values changed for that field.

    Fields not named in the rules pass through (copied). Raises ValueError naming a field with NaN/inf.
    """
    out = {k: np.array(v, copy=True) for k, v in fields.items()}
    counts: dict[str, int] = {}
    for name in RANGES:
        if name in out:
            _require_finite(name, out[name])
    for name, (lo, hi) in RANGES.items():
        if name not in out:
            continue
        a = out[name]
        outside = (a < lo) | (a > hi) if hi is not None else a < lo
        counts[name] = int(np.count_nonzero(outside))
        if counts[name]:
            np.clip(a, lo, hi, out=a)
    for count, name, zero in zeroing_rules(out):
        a = out[name]
        fired = zero & (a != 0.0)
        counts[count] = int(np.count_nonzero(fired))
        a[fired] = 0.0
    return out, counts


def zero_walls(fields: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> tuple[dict, dict[str, int]]:
    """Zero C-grid velocities on closed walls and on faces touching land, and the ice (sic, sit, snt) on land
    cells; return (copies, counts of changed values: `<velocity>_walls`, `<ice variable>_land`).

    siu(…, j, i) sits on the east face of cell (j, i): the last column is the east wall, and a face is closed if
    either neighbour is land. siv(…, j, i) sits on the north face: last row = north wall.
    `mask` (ny, nx): ocean where > 0.5.
    """
    out = {k: np.array(v, copy=True) for k, v in fields.items()}
    counts: dict[str, int] = {}
    if mask is not None:
        for name in (AREA, *ON_ICE):
            if name in out:
                a = out[name]
                land = np.broadcast_to(~(np.asarray(mask) > 0.5), a.shape)
                counts[f"{name}_land"] = int(np.count_nonzero(land & (a != 0.0)))
                a[land] = 0.0
    for name in VELOCITY_ON_EAST_FACE:
        if name not in out:
            continue
        a = out[name]
        closed = np.broadcast_to(~open_faces(mask, *a.shape[-2:])[name], a.shape)
        counts[f"{name}_walls"] = int(np.count_nonzero(closed & (a != 0.0)))
        a[closed] = 0.0
    return out, counts


#: below this forecast concentration the diagnosed thickness V/A of the coarse model is ill-conditioned (tiny A with
#: disproportionate V after transport: sit of 10³–10⁶ m were seen in year-long runs); such a thickness is not used
#: as the base of a correction, or a correction that raises sic there creates ice volume from nothing
THIN_FORECAST_SIC = 1e-3


def guard_thin_forecast(base: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """The residual-mode base with `sit`/`snt` set to 0 where the forecast `sic` < THIN_FORECAST_SIC, and the number
    of values this changed (sit/snt that were non-zero there). The volume given up is < 1e-3 · sit per cell."""
    out = dict(base)
    if AREA not in base:
        return out, 0
    thin = np.asarray(base[AREA]) < THIN_FORECAST_SIC
    fired = 0
    for v in ON_ICE:
        if v in base:
            a = np.asarray(base[v])
            hit = thin & (a != 0.0)
            if hit.any():
                fired += int(np.count_nonzero(hit))
                out[v] = np.where(thin, 0.0, a)
    return out, fired


# ----------------------------------------------------------------------------------------------------------------
# torch face
# ----------------------------------------------------------------------------------------------------------------

class TorchBounds:
    """`zero_walls` + `apply_bounds` as a differentiable torch function of a state tensor (V, ny, nx) with channels
    `variables`, plus land = 0 for sic, sit, snt. Clipping is piecewise linear and zeroing selects 0: the
    derivative is exact away from the kinks. mask (ny, nx): ocean where > 0.5; None = all ocean."""

    def __init__(self, variables: Sequence[str], mask: np.ndarray | None, ny: int, nx: int,
                 dtype: torch.dtype = torch.float64, device: "torch.device | str" = "cpu"):
        self.variables = list(variables)
        ocean = np.ones((ny, nx)) if mask is None else (np.asarray(mask) > 0.5).astype(np.float64)
        self.ocean = torch.as_tensor(ocean, dtype=dtype, device=device)
        self.faces = {name: torch.as_tensor(face.astype(np.float64), dtype=dtype, device=device)
                      for name, face in open_faces(mask, ny, nx).items()}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The bounded state (V, ny, nx), a new tensor; x is not modified."""
        ch = dict(zip(self.variables, x.unbind(0)))
        for name, (lo, hi) in RANGES.items():
            if name in ch:
                ch[name] = ch[name].clamp(lo, hi)
        for _, name, zero in zeroing_rules(ch):
            ch[name] = torch.where(zero, torch.zeros_like(ch[name]), ch[name])
        for name in (AREA, *ON_ICE):
            if name in ch:
                ch[name] = ch[name] * self.ocean
        for name, face in self.faces.items():
            if name in ch:
                ch[name] = ch[name] * face
        return torch.stack([ch[v] for v in self.variables])


# ----------------------------------------------------------------------------------------------------------------
# bounds that keep the domain totals of the unbounded state (an option of `Corrector.apply`'s callers)
# ----------------------------------------------------------------------------------------------------------------

#: how a corrected state is bounded: `clip` (`apply_bounds` alone: noise clipped at a bound is rectified into a gain
#: or loss of ice), `ridge` (`ridge_excess` after it: a concentration clipped at 1 keeps its ice and snow volume in a
#: thicker cover, as ridging does, cell by cell) or `conserve` (`conserve_totals` after it: the clipping gain of the
#: area and of the ice and snow volumes is taken back from, or given to, the cells that hold ice, so each member's
#: domain totals are those of the unbounded corrected state) or `conserve_area` (the area total alone; the thickness
#: of each cell stays as bounded, so the volume follows the area) or `conserve_physics` (the same fix-up towards the
#: totals of the physics forecast itself: the correction moves ice, the physics alone makes or melts it)
BOUNDS_MODES = ("clip", "ridge", "conserve", "conserve_area", "conserve_physics")
#: the volume per cell area (m) made of a thickness over the ice-covered part: volume = sic × thickness
THICKNESS_OF_VOLUME = {"sivol": VOLUME, "snvol": "snt"}


def _restore_total(a: np.ndarray, target: np.ndarray, room: np.ndarray | None) -> np.ndarray:
    """`a` (N, cells) ≥ 0 changed row by row so that its sum is `target` (N,) where possible: a surplus is taken
    from every cell in proportion to its value (a factor ≥ 0), a deficit given in proportion to `room` (the most a
    cell may gain; None = in proportion to its value, without limit). Rows with nothing to scale stay as they are."""
    total = a.sum(axis=1)
    gap = target - total
    out = a.copy()
    take = (gap < 0) & (total > 0)
    out[take] *= np.maximum(target[take] / total[take], 0.0)[:, None]
    give = gap > 0
    if room is None:
        give &= total > 0
        out[give] *= (target[give] / np.where(total[give] > 0, total[give], 1.0))[:, None]
    else:
        free = room.sum(axis=1)
        give &= free > 0
        share = np.minimum(gap[give] / np.where(free[give] > 0, free[give], 1.0), 1.0)
        out[give] += room[give] * share[:, None]
    return out


def conserve_totals(raw: Mapping[str, np.ndarray], bounded: Mapping[str, np.ndarray],
                    mask: np.ndarray | None = None, volumes: bool = True,
                    ceiling: bool = False) -> dict[str, np.ndarray]:
    """`bounded` with each item's domain totals of sic and of the volumes sic·sit, sic·snt set back to those of
    `raw`, the unbounded corrected state, as far as the bounds allow; still within the bounds.

    raw, bounded: {variable: (…, ny, nx)} (`bounded` = `apply_bounds`/`zero_walls` of `raw`); every leading index
    (batch item, member) is its own domain. The area surplus of the clipping is taken from the ice cells in
    proportion to their concentration, a deficit given to cells with ice in proportion to their room below 1; then
    (`volumes`) the thickness is scaled where there is ice so that the volume totals match. With `ceiling` a deficit
    goes back only where `raw` holds more (area, volume) than the bounded state, up to `raw`'s cell value: the totals
    of a reference state are then restored where it has them, instead of piling them onto the ice that is left. Only
    ocean cells count (mask > 0.5) and change. The bounds are applied again at the end (an area scaled to 0 loses its
    volume).
    """
    out = {k: np.array(v, dtype=np.float64, copy=True) for k, v in bounded.items()}
    if AREA not in out:
        return out
    shape = out[AREA].shape
    ocean = np.broadcast_to(np.ones(shape[-2:], bool) if mask is None else np.asarray(mask) > 0.5, shape)
    flat = {k: np.where(ocean, np.asarray(v, dtype=np.float64), 0.0).reshape(-1, shape[-2] * shape[-1])
            for k, v in raw.items() if k in out and np.shape(v) == shape}
    cur = {k: np.where(ocean, out[k], 0.0).reshape(flat[AREA].shape) for k in flat}
    has_ice = (cur[AREA] > 0) & (cur.get(VOLUME, cur[AREA]) > 0)
    area_room = np.maximum(flat[AREA] - cur[AREA], 0.0) if ceiling else np.where(has_ice, 1.0 - cur[AREA], 0.0)
    cur[AREA] = _restore_total(cur[AREA], flat[AREA].sum(axis=1), area_room)
    for volume, h in THICKNESS_OF_VOLUME.items():
        if h not in cur or not volumes:
            continue
        v_now = cur[AREA] * cur[h]
        room = None
        if ceiling:  # give back where the reference holds more, at most its thickness over the area a cell has
            room = np.maximum(np.minimum(flat[AREA] * flat[h], cur[AREA] * np.maximum(flat[h], cur[h])) - v_now, 0.0)
        v_new = _restore_total(v_now, (flat[AREA] * flat[h]).sum(axis=1), room)
        # the thickness that carries the new volume on the cell's area (no area: no volume, thickness kept)
        cur[h] = np.where(cur[AREA] > 0, v_new / np.where(cur[AREA] > 0, cur[AREA], 1.0), cur[h])
    for k, a in cur.items():
        out[k] = np.where(ocean, a.reshape(shape), out[k])
    return apply_bounds(out)[0]


def ridge_excess(raw: Mapping[str, np.ndarray], bounded: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`bounded` with the thickness (sit, snt) of every cell whose concentration was clipped down to 1 scaled by the
    unbounded concentration, so that the cell keeps the volumes sic·sit and sic·snt of the unbounded state (the
    excess area is ridged into thickness). raw, bounded: {variable: (…, ny, nx)}; other cells are unchanged."""
    out = {k: np.array(v, copy=True) for k, v in bounded.items()}
    if AREA not in out or AREA not in raw:
        return out
    over = (np.asarray(raw[AREA]) > 1.0) & (out[AREA] >= 1.0)
    for h in ON_ICE:
        if h in out:
            out[h] = np.where(over, out[h] * np.asarray(raw[AREA]), out[h])
    return out


def rebound(mode: str, raw: Mapping[str, np.ndarray], bounded: Mapping[str, np.ndarray],
            mask: np.ndarray | None = None, physics: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The state bounded in `mode` (BOUNDS_MODES) from `raw`, the unbounded corrected state, and `bounded`, its
    `zero_walls` + `apply_bounds` copy: `clip` returns `bounded` itself; the others fix it up (`ridge_excess`,
    `conserve_totals`; `conserve_physics` towards the totals of `physics`, the uncorrected forecast in the shape of
    `bounded`). Fields other than sic, sit, snt pass through from `bounded`."""
    if mode == "conserve_physics":
        if physics is None:
            raise ValueError("bounds mode 'conserve_physics' needs the physics forecast (residual mode)")
        return {**bounded, **conserve_totals(physics, bounded, mask, ceiling=True)}
    if mode == "clip":
        return dict(bounded)
    if mode == "ridge":
        return {**bounded, **ridge_excess(raw, bounded)}
    if mode in ("conserve", "conserve_area"):
        return {**bounded, **conserve_totals(raw, bounded, mask, volumes=mode == "conserve")}
    raise ValueError(f"bounds mode {mode!r}: choose from {BOUNDS_MODES}")
