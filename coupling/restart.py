"""Restart files of coupled and emulator runs: the model state of every member of every window plus the step index.

Randomness is stateless (`corrector.seeding.member_seeds(seed, start_index, step, members)`), so the base seed,
the window start indices and the number of completed steps are all a continuation needs besides the states:
a restarted run is bit-identical to an uninterrupted one. Noise correlated over steps
(`sampler.noise_decorrelation_days`) is a sum of those per-step draws (`corrector.seeding.ar1_weights`), so it
needs no saved state either. Files are CF NetCDF4 written atomically. The file records
the corrector's id (`checkpoint_file_id`), so a restart with another corrector is refused (`check_same_checkpoint`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import xarray as xr

from icecorr.base.files import describe_open_error
from icecorr.base.errors import InputError
from icecorr.base.files import write_dataset_atomic

FORMAT = "icecorr-restart-1"
EXTRAS = "restart_extras"
SEEDING = ("corrector.seeding.member_seeds(seed, window start index, step index, members)[member]; with "
           "sampler.noise_decorrelation_days > 0 the AR(1) sum of the draws of steps n, n-1, ... (ar1_weights)")


@dataclass
class RestartState:
    """Everything needed to continue a run after `step` completed 12 h steps."""

    mode: str                       # "couple" | "emulate"
    step: int                       # completed steps since the window starts
    start_indices: list[int]        # forcing index of each window start
    members: int
    seed: int
    states: dict[str, np.ndarray]   # variable -> (window, member, y, x) float64
    extras: np.ndarray | None = None  # (window, member, n) model state get_state does not show (hidden_state)
    units: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)   # trajectory file of each window
    checkpoint_id: str = ""
    dx: float = 1.0
    config: str = ""

    def member_state(self, window: int, member: int) -> dict[str, np.ndarray]:
        """The state of one member of one window: variable -> (y, x)."""
        return {k: v[window, member] for k, v in self.states.items()}


def restart_path(folder: str | Path, stem: str, step: int) -> Path:
    """`<folder>/<stem>.restart.step<NNNNN>.nc`: the restart file after `step` completed steps."""
    return Path(folder) / f"{stem}.restart.step{step:05d}.nc"


def write_restart(path: str | Path, r: RestartState) -> Path:
    """Write `r` atomically (temp name + rename) and return the path."""
    n_win, n_mem = len(r.start_indices), r.members
    data_vars = {}
    for name, arr in r.states.items():
        arr = np.asarray(arr, dtype=np.float64)
        if arr.shape[:2] != (n_win, n_mem):
            raise ValueError(f"restart state '{name}' has shape {arr.shape}, expected ({n_win}, {n_mem}, ny, nx)")
        data_vars[name] = (("window", "member", "y", "x"), arr, {"units": r.units.get(name, ""),
                                                                 "long_name": f"restart state: {name}"})
    if r.extras is not None:
        data_vars[EXTRAS] = (("window", "member", "extra"), np.asarray(r.extras, dtype=np.float64),
                             {"long_name": "model state not in get_state (wall-corner stresses, counters, clock)"})
    ds = xr.Dataset(
        data_vars,
        coords={"start_index": ("window", np.asarray(r.start_indices, dtype=np.int64),
                                {"long_name": "forcing index of the window start"}),
                "member": ("member", np.arange(n_mem), {"standard_name": "realization", "units": "1"})},
        attrs={"format": FORMAT, "mode": r.mode, "step": int(r.step), "seed": int(r.seed),
               "members": int(n_mem), "seeding": SEEDING, "outputs": json.dumps(r.outputs),
               "checkpoint_id": r.checkpoint_id, "grid_dx": float(r.dx), "config": r.config,
               "Conventions": "CF-1.10", "title": f"icecorr {r.mode} restart after step {r.step}",
               "history": f"{datetime.now():%Y-%m-%dT%H:%M:%S} written by icecorr {r.mode}"})
    return write_dataset_atomic(ds, path)


def read_restart(path: str | Path) -> RestartState:
    """Read a restart file; any missing or inconsistent part is an InputError naming the file and field."""
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), None, "restart file does not exist")
    try:
        ds = xr.load_dataset(path)
    except Exception as exc:  # noqa: BLE001 - any decode failure is one clear message
        raise InputError(str(path), None, f"not a readable NetCDF restart file: {describe_open_error(exc)}") \
            from None
    for key in ("format", "mode", "step", "seed", "members"):
        if key not in ds.attrs:
            raise InputError(str(path), key, "missing global attribute: not an icecorr restart file")
    if ds.attrs["format"] != FORMAT:
        raise InputError(str(path), "format", f"is {ds.attrs['format']!r}, expected {FORMAT!r}")
    if "start_index" not in ds.coords:
        raise InputError(str(path), "start_index", "missing window start indices")
    states = {}
    extras = ds[EXTRAS].values if EXTRAS in ds else None
    for name, var in ds.data_vars.items():
        if name == EXTRAS:
            continue
        if var.dims != ("window", "member", "y", "x"):
            raise InputError(str(path), name, f"has dims {var.dims}, expected (window, member, y, x)")
        values = var.values.astype(np.float64)
        if not np.isfinite(values).all():
            raise InputError(str(path), name, "contains NaN or infinite values")
        states[name] = values
    return RestartState(
        mode=str(ds.attrs["mode"]), step=int(ds.attrs["step"]),
        start_indices=[int(i) for i in ds["start_index"].values], members=int(ds.attrs["members"]),
        seed=int(ds.attrs["seed"]), states=states, extras=extras,
        units={k: v.attrs.get("units", "") for k, v in ds.data_vars.items() if k != EXTRAS},
        outputs=json.loads(ds.attrs.get("outputs", "[]")), checkpoint_id=str(ds.attrs.get("checkpoint_id", "")),
        dx=float(ds.attrs.get("grid_dx", 1.0)), config=str(ds.attrs.get("config", "")))


def check_continuation(path: str | Path, r: RestartState, mode: str, start_indices: list[int], members: int,
                       seed: int) -> None:
    """A restart continues the same run only: same mode, windows, members and seed."""
    for fld, have, want in (("mode", r.mode, mode), ("start_index", r.start_indices, list(start_indices)),
                            ("members", r.members, members), ("seed", r.seed, seed)):
        if have != want:
            raise InputError(str(path), fld, f"restart has {have!r} but this run asks for {want!r}; "
                                             f"a restart must continue the same run")


def checkpoint_file_id(checkpoint: str | os.PathLike | None) -> str:
    """The id a run records for its corrector: 'zero' without a checkpoint, else 'sha256:<first 16 hex> (<path>)'
    of the checkpoint file's bytes (a copied or moved checkpoint keeps its id)."""
    if checkpoint is None:
        return "zero"
    h = hashlib.sha256()
    with open(checkpoint, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()[:16]} ({checkpoint})"


def _in_words(checkpoint_id: str) -> str:
    return "no checkpoint (zero correction)" if checkpoint_id == "zero" else f"checkpoint {checkpoint_id}"


def check_same_checkpoint(path: str | Path, r: RestartState, checkpoint: str | os.PathLike | None,
                          corrector=None) -> None:
    """A restart continues with the corrector its run started with (same file content, or both without one).
    `corrector`, if given (already loaded), is the one the run uses: its file (`source`) replaces `checkpoint`; a
    corrector without a file (built in memory) cannot be checked. Restart files that recorded no file id (older
    files, in-memory correctors) cannot be checked either."""
    if corrector is not None:
        if getattr(corrector, "is_zero", False):
            checkpoint = None
        elif getattr(corrector, "source", None):
            checkpoint = corrector.source
        else:
            return
    have = r.checkpoint_id
    if not have or have.startswith("in-memory") or (checkpoint is not None and not Path(checkpoint).is_file()):
        return  # a missing checkpoint file is reported by the corrector loader
    want = checkpoint_file_id(checkpoint)
    if have.split(" ")[0] != want.split(" ")[0]:
        raise InputError(str(path), "checkpoint_id", f"the run was started with {_in_words(have)} but this run "
                                                     f"uses {_in_words(want)}; a restart must continue with the "
                                                     f"same corrector")
