"""Augmentation of training items: flips along x and y and rot90 (square grids), exact on the C-grid (vector components
negated or exchanged, face-staggered velocities re-staggered), on fields whose channels are named as in pair files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

PAIR_PREFIXES = ("initial_", "forecast_", "reference_", "residual_")
TIME_SUFFIXES = ("_t0", "_t1")

#: vector components on C-grid faces (u on east faces, v on north faces) and at cell centres
X_FACE, Y_FACE = {"siu"}, {"siv"}
X_CENTRE, Y_CENTRE = {"uas", "uo"}, {"vas", "vo"}
#: the component a channel exchanges places with when x and y are swapped
XY_PARTNER = {"siu": "siv", "siv": "siu", "uas": "vas", "vas": "uas", "uo": "vo", "vo": "uo"}


# ----------------------------------------------------------------------------------------------------------------
# Channel names
# ----------------------------------------------------------------------------------------------------------------

def split_name(channel: str) -> tuple[str, str, str]:
    """'forecast_siu' → ('forecast_', 'siu', ''); 'uas_t1' → ('', 'uas', '_t1'); 'sic' → ('', 'sic', '')."""
    prefix = next((p for p in PAIR_PREFIXES if channel.startswith(p)), "")
    rest = channel[len(prefix):]
    suffix = next((s for s in TIME_SUFFIXES if rest.endswith(s)), "")
    return prefix, rest[: len(rest) - len(suffix)], suffix


def xy_partner(channel: str) -> str:
    """The channel holding the other vector component ('initial_siu' → 'initial_siv'); scalars map to themselves."""
    prefix, base, suffix = split_name(channel)
    return prefix + XY_PARTNER.get(base, base) + suffix


# ----------------------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flags:
    """One augmentation: optional rot90 (`np.rot90` on (y, x) arrays: clockwise in an x-right, y-up frame), then
    optional flips along x and y (see `augment_fields`)."""

    flip_x: bool = False
    flip_y: bool = False
    rot90: bool = False

    def labels(self) -> np.ndarray:
        """The conditioning labels (flip_x, flip_y, rot90) as float32 0/1."""
        return np.array([self.flip_x, self.flip_y, self.rot90], dtype=np.float32)


def _flip_face(a: np.ndarray, axis: int, fill: np.ndarray | float) -> np.ndarray:
    """Mirror face-staggered values along `axis`: a[..., k] lives on the far face of cell k (east/north), the near
    wall (west/south) is implicit. Mirroring moves face k+1 to face n−1−k, so the far-face array of the mirrored
    field is a[..., n−2−k]; the new far wall (index n−1) is the old near wall, filled with `fill`."""
    a = np.moveaxis(a, axis, -1)
    out = np.empty_like(a)
    out[..., :-1] = a[..., -2::-1]
    out[..., -1] = fill
    return np.moveaxis(out, -1, axis)


def augment_fields(fields: np.ndarray, names: Sequence[str], flags: Flags, is_mask: bool = False) -> np.ndarray:
    """Apply `flags` to `fields` (..., C, ny, nx) whose channels are named `names`, in physical units.

    Order: rot90 first, then flip_x, then flip_y. rot90 is `np.rot90` on (y, x): the old point (x, y) moves to
    (x', y') = (y, −x) and vectors turn with it, (u', v') = (v, −u); it is implemented as a transpose (x ↔ y, exchanging
    u/v channels and their faces, exact on the C-grid) followed by flip_y, and needs ny == nx.
    Flips negate the normal component and re-stagger face values exactly (closed walls: the new far wall is the old
    near wall, 0). For masks (`is_mask`) nothing is negated and the new wall copies the old far wall's mask.
    Returns a new array; `fields` is not modified.
    """
    out = np.array(fields, copy=True)
    bases = [split_name(n)[1] for n in names]
    if flags.rot90:
        if out.shape[-1] != out.shape[-2]:
            raise ValueError(f"rot90 augmentation needs a square grid, got ny×nx = {out.shape[-2]}×{out.shape[-1]}")
        index = {n: k for k, n in enumerate(names)}
        perm = [index.get(xy_partner(n), k) for k, n in enumerate(names)]
        out = np.swapaxes(out[..., perm, :, :], -1, -2)
        out = _flip(out, bases, axis=-2, is_mask=is_mask)
    if flags.flip_x:
        out = _flip(out, bases, axis=-1, is_mask=is_mask)
    if flags.flip_y:
        out = _flip(out, bases, axis=-2, is_mask=is_mask)
    return out


def _flip(a: np.ndarray, bases: Sequence[str], axis: int, is_mask: bool) -> np.ndarray:
    """Mirror every channel along `axis` (-1 = x, -2 = y), with vector/face handling per channel base name."""
    faces, normal = (X_FACE, X_FACE | X_CENTRE) if axis == -1 else (Y_FACE, Y_FACE | Y_CENTRE)
    out = np.flip(a, axis=axis).copy()
    for c, base in enumerate(bases):
        if base in faces:
            ch = a[..., c, :, :]
            wall = np.take(ch, -1, axis=axis) if is_mask else 0.0
            out[..., c, :, :] = _flip_face(ch, axis, wall)
        if base in normal and not is_mask:
            out[..., c, :, :] *= -1.0
    return out


# ----------------------------------------------------------------------------------------------------------------
# Random crops (patches of a large domain)
# ----------------------------------------------------------------------------------------------------------------

def crop_origins(ocean: np.ndarray, size: int, stride: int, min_ocean: float) -> np.ndarray:
    """(n, 2) int64 lower-left corners (j0, i0) of the `size` × `size` patches of an (ny, nx) domain on a lattice of
    `stride` cells (the last row/column of patches touches the far edges), keeping those whose ocean share
    (`ocean` bool (ny, nx)) is at least `min_ocean`: a patch of land alone teaches nothing."""
    ny, nx = ocean.shape
    if size > min(ny, nx):
        raise ValueError(f"crop size {size} exceeds the domain ny×nx = {ny}×{nx}")

    def starts(n: int) -> np.ndarray:
        return np.unique(np.append(np.arange(0, n - size + 1, stride), n - size))

    js, is_ = np.meshgrid(starts(ny), starts(nx), indexing="ij")
    corners = np.stack([js.ravel(), is_.ravel()], axis=1).astype(np.int64)
    share = np.array([ocean[j:j + size, i:i + size].mean() for j, i in corners])
    keep = corners[share >= min_ocean]
    if not len(keep):
        raise ValueError(f"no {size}×{size} patch has an ocean share >= {min_ocean}")
    return keep


def crop_fields(fields: np.ndarray, origin: tuple[int, int], size: int) -> np.ndarray:
    """The `size` × `size` patch at `origin` (j0, i0) of fields (..., ny, nx), a copy. Face-staggered velocities
    (siu on east faces, siv on north faces) keep the faces of the patch's cells; the patch's west/south faces are
    implicit, as the domain's walls are (a flip of a patch then puts 0 on its new far faces: exact on walls and
    land, an approximation of one row of faces in open water)."""
    j0, i0 = (int(x) for x in origin)
    return np.array(fields[..., j0:j0 + size, i0:i0 + size], copy=True)
