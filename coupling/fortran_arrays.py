"""What the two Fortran-backed models (`CoarseModel` in bridge.py, `TruthModel` in truth.py) share.

Both keep their prognostic arrays in Python, Fortran-ordered (nx, ny), and hand out (ny, nx) `.T` views. This module
holds the parts of their bridge API that are the same for both: the deferred import of the extension, filling an
f90wrap derived type from a config, validating (ny, nx) fields, writing a validated state into the views (thickness
→ volume), the grid's land mask and Coriolis field as the Fortran arrays of the step (and land applied to a state),
and packing forcing into the (nx, ny, n_forcing) array the Fortran step reads.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.variables import FORCING_VARIABLES


def fortran_extension():
    """The compiled `fortran_stub.seaice` module (imported on first use: importing may rebuild the extension in an
    editable install)."""
    from fortran_stub import seaice
    return seaice


def set_components(obj, values: Mapping[str, object], type_name: str) -> None:
    """Copy every value onto the f90wrap derived-type `obj`; a name Fortran does not know is a bug: fail loudly."""
    for name, value in values.items():
        if not hasattr(obj, name):
            raise AttributeError(f"Fortran type {type_name} has no component '{name}' (config and Fortran differ)")
        setattr(obj, name, value)


def checked_field(name: str, value, shape: tuple[int, int], where: str) -> np.ndarray:
    """`value` as an array after checking shape, dtype and finiteness; InputError (a ValueError) names the field."""
    arr = value.values if isinstance(value, xr.DataArray) else np.asarray(value)
    if arr.shape != shape:
        raise InputError(None, name, f"{where}: shape {arr.shape}, expected (ny, nx) = {shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(None, name, f"{where}: dtype {arr.dtype}, expected a floating-point array")
    if not np.all(np.isfinite(arr)):
        raise InputError(None, name, f"{where}: contains NaN or infinite values")
    return arr


def checked_state(state, settable: frozenset[str] | set[str], shape: tuple[int, int],
                  unknown: str) -> dict[str, np.ndarray]:
    """The fields of a `set_state` argument (mapping of (ny, nx) arrays or Dataset), each checked by
    `checked_field`; a name outside `settable` raises InputError "set_state: <unknown>"."""
    items = {k: state[k] for k in state.data_vars} if isinstance(state, xr.Dataset) else dict(state)
    checked: dict[str, np.ndarray] = {}
    for name, value in items.items():
        if name not in settable:
            raise InputError(None, name, f"set_state: {unknown}")
        checked[name] = checked_field(name, value, shape, "set_state")
    return checked


def write_state(views: Mapping[str, np.ndarray], checked: Mapping[str, np.ndarray]) -> None:
    """Write validated fields into the model's (ny, nx) views. Thicknesses become volumes: sivol = sit·sic and
    snvol = snt·sic (m, with the new sic if given); the wall faces of siu/siv are forced to 0."""
    for name, arr in checked.items():
        if name not in ("sit", "snt"):
            views[name][...] = arr
    a = views["sic"]
    if "sit" in checked:
        np.multiply(checked["sit"], a, out=views["sivol"])
    if "snt" in checked:
        np.multiply(checked["snt"], a, out=views["snvol"])
    views["siu"][:, -1] = 0.0
    views["siv"][-1, :] = 0.0


#: state variables that are ice (or stress carried by ice): exactly 0 on land cells
LAND_ZERO = ("sic", "sivol", "snvol", "sig1", "sig2", "sig11", "sig22")


def grid_arrays(grid, coriolis: float) -> tuple[np.ndarray, np.ndarray]:
    """(ocean, fcor) as Fortran-ordered (nx, ny) float64 arrays for the step: the grid's ocean mask (1 ocean,
    0 land; all ones without a mask) and its Coriolis field (s-1; the constant `coriolis` without latitudes)."""
    return (np.asfortranarray(grid.ocean_mask().T), np.asfortranarray(grid.coriolis_field(coriolis).T))


def closed_faces(ocean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(east, north) bool (ny, nx): the east (siu) / north (siv) face of each cell is closed — a wall (last column
    / last row) or land on either side. `ocean` (ny, nx): 1 ocean, 0 land."""
    oc = np.asarray(ocean) > 0.5
    east = np.ones_like(oc)
    east[:, :-1] = ~(oc[:, :-1] & oc[:, 1:])
    north = np.ones_like(oc)
    north[:-1, :] = ~(oc[:-1, :] & oc[1:, :])
    return east, north


def apply_land(views: Mapping[str, np.ndarray], ocean: np.ndarray) -> None:
    """Land holds no ice: zero the LAND_ZERO fields present in `views` on land cells and siu/siv on faces touching
    land (in place, (ny, nx) views). `ocean` (ny, nx): 1 ocean, 0 land."""
    land = np.asarray(ocean) <= 0.5
    for name in LAND_ZERO:
        if name in views:
            views[name][land] = 0.0
    east, north = closed_faces(ocean)
    views["siu"][east] = 0.0
    views["siv"][north] = 0.0


def pack_forcing(forcing: Mapping, out: np.ndarray, shape: tuple[int, int], which: str) -> None:
    """Copy the forcing snapshot at window end `which` ('t0'/'t1') into `out` (nx, ny, n_forcing), Fortran order,
    in FORCING_VARIABLES order; a missing or bad field raises InputError naming it."""
    for k, name in enumerate(FORCING_VARIABLES):
        if name not in forcing:
            raise InputError(None, name, f"step: forcing at {which} lacks this variable "
                                         f"(need {', '.join(FORCING_VARIABLES)})")
        out[:, :, k] = checked_field(name, forcing[name], shape, f"step: forcing at {which}").T
