"""Which values of an observation file are valid, from its mask variable.

A CF flag variable (`flag_meanings` with `flag_values` or `flag_masks`, e.g. OSI SAF's `status_flag`, where 0 means
nominal) says nothing by itself about which flags are usable: the user lists the meanings that mark valid values
(`valid_flags`), and a flag variable without that list is refused rather than read as "non-zero = valid" — the
opposite of most products' meaning. A plain mask (no flag attributes) keeps "non-zero = valid".
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError


def valid_from_mask(path, var: xr.DataArray, valid_flags: Sequence[str] | None) -> np.ndarray:
    """Bool array (the shape of `var`): True where the mask variable `var` marks a valid value."""
    name = var.name
    meanings = str(var.attrs.get("flag_meanings", "")).split()
    raw = np.asarray(var.values)
    if not meanings:
        if valid_flags:
            raise InputError(str(path), name, f"valid_flags {list(valid_flags)} given, but the variable has no "
                             "flag_meanings: drop valid_flags (non-zero = valid) or name a CF flag variable")
        return np.nan_to_num(raw.astype(np.float64)) != 0
    if not valid_flags:
        raise InputError(str(path), name, f"is a CF flag variable (flag_meanings: {' '.join(meanings)}): list the "
                         f"meanings that mark valid values in the mapping's `valid_flags` (e.g. [{meanings[0]}])")
    unknown = [f for f in valid_flags if f not in meanings]
    if unknown:
        raise InputError(str(path), name, f"valid_flags {unknown} are not among its flag_meanings {meanings}")
    wanted = [meanings.index(f) for f in valid_flags]
    if "flag_values" in var.attrs:
        values = np.atleast_1d(var.attrs["flag_values"])
        if values.size != len(meanings):
            raise InputError(str(path), name, f"{values.size} flag_values for {len(meanings)} flag_meanings")
        return np.isin(raw, values[wanted])
    if "flag_masks" in var.attrs:
        masks = np.atleast_1d(var.attrs["flag_masks"]).astype(np.int64)
        if masks.size != len(meanings):
            raise InputError(str(path), name, f"{masks.size} flag_masks for {len(meanings)} flag_meanings")
        allowed = int(np.bitwise_or.reduce(masks[wanted]))
        ints = np.nan_to_num(raw.astype(np.float64), nan=-1).astype(np.int64)
        # a value is valid when every bit it sets belongs to a listed meaning (0: no flag raised)
        return (ints >= 0) & ((ints & ~allowed) == 0)
    raise InputError(str(path), name, "has flag_meanings but neither flag_values nor flag_masks")
