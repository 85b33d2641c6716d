"""Training-pair records: the (time, y, x) arrays of initial state, coarse forecast, reference, residual and forcing
of a set of 12 h windows (`PairBuffer`), and their CF Dataset (`pair_dataset`, layout in docs/design.md
'Training-pair files'), shared by `icecorr generate` and `icecorr prepare`."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import xarray as xr

from icecorr.base.variables import ML_VARIABLES, attrs
from training.data.forcing import FORCING_METADATA

#: the splits of a training set, in file and run order
SPLITS = ("train", "val", "test")


def state_arrays(state) -> dict[str, np.ndarray]:
    """A model state (Dataset or mapping of arrays) as float64 arrays by variable name."""
    if isinstance(state, xr.Dataset):
        return {k: np.asarray(state[k].values, dtype=np.float64) for k in state.data_vars}
    return {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}


#: suffix of the reference velocities averaged over the 12 h window (`reference_siu_mean12h`)
MEAN_VELOCITY_SUFFIX = "_mean12h"
VELOCITY_VARIABLES = ("siu", "siv")
_ROLE = {"initial_": "coarse-grained reference at t: ", "forecast_": "coarse-model 12 h forecast from initial: ",
         "reference_": "coarse-grained reference at t+12h: ", "residual_": "reference - forecast: "}


def state_metadata() -> dict[str, dict[str, str]]:
    """CF attributes (units, standard_name, long_name) of the ML variables and damage (icecorr.base.variables)."""
    return {v: attrs(v) for v in (*ML_VARIABLES, "damage")}


class PairBuffer:
    """Preallocated (n, ny, nx) arrays of one run's training pairs in the storage dtype; the residual is formed
    in float64 before rounding."""

    def __init__(self, n: int, ny: int, nx: int, forcing_names, dtype: str, with_damage: bool = True,
                 with_mean_velocity: bool = False):
        self.n, self.dtype = n, np.dtype(dtype)
        self.forcing_names = tuple(forcing_names)
        names = [p + v for p in ("initial_", "forecast_", "reference_", "residual_") for v in ML_VARIABLES]
        if with_damage:
            names += ["initial_damage", "reference_damage"]
        if with_mean_velocity:  # the truth's velocity averaged over the window (BBM velocities ring elastically)
            names += [f"reference_{v}{MEAN_VELOCITY_SUFFIX}" for v in VELOCITY_VARIABLES]
        names += [f + s for f in self.forcing_names for s in ("_t0", "_t1")]
        self.arrays = {k: np.zeros((n, ny, nx), dtype=self.dtype) for k in names}
        self.with_damage = with_damage

    def put(self, w: int, initial: Mapping, forecast: Mapping, reference: Mapping,
            f0: Mapping, f1: Mapping, mean_velocity: Mapping | None = None) -> None:
        """Store window `w`: the states (initial, forecast, reference; residual = reference − forecast in float64),
        the forcing at t (`f0`) and t + 12 h (`f1`) and, in a buffer made `with_mean_velocity`, the reference's
        siu/siv averaged over the window (`mean_velocity`, m s-1)."""
        a = self.arrays
        for v in VELOCITY_VARIABLES if mean_velocity is not None else ():
            a[f"reference_{v}{MEAN_VELOCITY_SUFFIX}"][w] = mean_velocity[v]
        for v in ML_VARIABLES:
            a["initial_" + v][w] = initial[v]
            a["forecast_" + v][w] = forecast[v]
            a["reference_" + v][w] = reference[v]
            a["residual_" + v][w] = np.asarray(reference[v], np.float64) - np.asarray(forecast[v], np.float64)
        if self.with_damage:
            a["initial_damage"][w] = initial["damage"]
            a["reference_damage"][w] = reference["damage"]
        for f in self.forcing_names:
            a[f + "_t0"][w] = f0[f]
            a[f + "_t1"][w] = f1[f]


def pair_dataset(buf: PairBuffer, times: np.ndarray, dx: float, mask: np.ndarray) -> xr.Dataset:
    """CF Dataset (time, y, x) of a PairBuffer, with x/y cell-centre coordinates (m) and the ocean mask."""
    _, ny, nx = next(iter(buf.arrays.values())).shape
    ds = xr.Dataset(coords={
        "time": ("time", times, {"standard_name": "time", "long_name": "window start t"}),
        "y": ("y", (np.arange(ny) + 0.5) * dx, {"units": "m", "long_name": "y of cell centre", "axis": "Y",
                                                "standard_name": "projection_y_coordinate"}),
        "x": ("x", (np.arange(nx) + 0.5) * dx, {"units": "m", "long_name": "x of cell centre", "axis": "X",
                                                "standard_name": "projection_x_coordinate"}),
    })
    meta = state_metadata()
    for name, arr in buf.arrays.items():
        if name.endswith(("_t0", "_t1")):
            base, when = name[:-3], ("t" if name.endswith("_t0") else "t+12h")
            units, std_name, long_name = FORCING_METADATA[base]
            attrs = {"units": units, "standard_name": std_name, "long_name": f"{long_name} at {when} (coarse grid)"}
        else:
            prefix, v = name.split("_", 1)
            mean = v.endswith(MEAN_VELOCITY_SUFFIX)
            m = meta[v.removesuffix(MEAN_VELOCITY_SUFFIX)]
            attrs = {"units": m["units"], "long_name": _ROLE[prefix + "_"] + m["long_name"]}
            if mean:
                attrs.update(long_name=f"coarse-grained reference averaged over (t, t+12h]: {m['long_name']}",
                             cell_methods="time: mean")
            if prefix != "residual" and "standard_name" in m:
                attrs["standard_name"] = m["standard_name"]
        ds[name] = (("time", "y", "x"), arr, attrs)
    ds["mask"] = (("y", "x"), mask.astype(np.int8), {"long_name": "ocean mask",
                                                     "flag_values": np.array([0, 1], dtype=np.int8),
                                                     "flag_meanings": "land ocean"})
    return ds
