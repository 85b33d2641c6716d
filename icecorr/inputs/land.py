"""The ocean mask of a user's forecast files: from a mask variable (non-zero = ocean, or a CF flag variable whose
`flag_meanings` name land and/or ocean, so a mask stored as 1 = land is read right), or, without one, the cells
where the forecast is valid at least once (land = fill value/NaN at every time). A mask that looks inverted (the
forecast is fill on its 'ocean' and valid on all its 'land') is refused with a hint.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError

#: words of a CF flag meaning that mark water cells (flag_meanings such as "ocean land", "sea_ice land water")
OCEAN_WORDS = ("ocean", "sea", "water")


def ocean_from_mask_variable(path, var: xr.DataArray, key: str) -> np.ndarray:
    """Bool (…, y, x): True where the mask variable `var` marks ocean. CF flag variables: the values whose
    meanings contain an OCEAN_WORDS word are ocean (or, with none of them, every value but the 'land' ones);
    plain variables: non-zero = ocean (NaN = land). `key`: the config key naming the variable (for errors)."""
    raw = np.asarray(var.values, np.float64)
    meanings = str(var.attrs.get("flag_meanings", "")).split()
    if not meanings:
        return np.nan_to_num(raw) != 0
    values = np.atleast_1d(var.attrs.get("flag_values", []))
    if values.size != len(meanings):
        raise InputError(str(path), var.name, f"{values.size} flag_values for {len(meanings)} flag_meanings "
                         f"({key})")
    ocean = [v for v, m in zip(values, meanings) if any(w in m.lower() for w in OCEAN_WORDS)]
    land = [v for v, m in zip(values, meanings) if "land" in m.lower()]
    if ocean:
        return np.isin(raw, ocean)
    if land:
        return np.isfinite(raw) & ~np.isin(raw, land)
    raise InputError(str(path), var.name, f"flag_meanings '{' '.join(meanings)}' name neither ocean nor land: "
                     f"give a plain mask (non-zero = ocean) as {key}")


def check_not_inverted(path, name: str, ocean: np.ndarray, valid: np.ndarray, key: str,
                       what: str = "forecast") -> None:
    """InputError with a hint when the mask `ocean` (y, x) looks inverted against `valid` (y, x: where the data,
    `what` — the forecast, the reference state —, have a value): invalid on some of its ocean, and valid on every
    one of its land cells."""
    wet_invalid = int((ocean & ~valid).sum())
    if wet_invalid and (~ocean).any() and valid[~ocean].all():
        raise InputError(str(path), name, f"the mask looks inverted: the {what} is fill/NaN on {wet_invalid} of "
                         f"its ocean cells and valid on all {int((~ocean).sum())} of its land cells; is it 1 = land? "
                         f"Give a mask with 1 = ocean, or CF flag_values/flag_meanings ('land ocean'), as {key}")
