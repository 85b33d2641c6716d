"""The inputs of the standalone Fortran coarse driver (fortran_stub/driver/), written from a couple config.

    write_kit(grid, physics, couple, initial_state, forcing_source, out_dir, tiles=(1, 1)) -> Path

The driver must reproduce a Python physics rank of `icecorr couple` bit for bit, so everything it reads is exactly
what the Python rank would use: the initial state of each window as `CoarseModel` holds it after `set_state`
(volumes already multiplied out), the forcing snapshots of every step as `ForcingSource.pair` returns them, and the
physics parameters as `fortran_values()` / `thermo` give them (floats written with `repr`, which round-trips).
Layout of the folder: see fortran_stub/driver/icecorr_kit.f90.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fortran_stub.config import CoarsePhysicsConfig, GridConfig
from icecorr.base.errors import InputError
from icecorr.base.files import atomic_path
from icecorr.base.variables import FORCING_VARIABLES, STEP_SECONDS
from icecorr.inputs.state_file import StateFile
from .bridge import CoarseModel
from .config import CoupleConfig
from .fortran_arrays import pack_forcing
from .forcing import open_forcing
from .member_fields import hidden_state
from .pairs import preflight_inputs, state_arrays, window_states

#: the fields of one window's initial state, in the order of initial.bin (then the shear stress on all corners)
STATE_NAMES = ("sic", "sivol", "snvol", "tsi", "tos", "siu", "siv", "sig1", "sig2")


def namelist_value(value) -> str:
    """A Python value as a Fortran namelist constant (floats exactly: repr round-trips)."""
    if isinstance(value, bool):
        return ".true." if value else ".false."
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".eE") else text + ".0"
    if isinstance(value, (list, tuple)):
        return ", ".join(namelist_value(v) for v in value)
    raise TypeError(f"no namelist form for {value!r}")


def namelist_group(name: str, values: dict, prefix: str = "") -> str:
    """`&name key = value, … /` with one entry per line."""
    lines = [f"&{name}"] + [f"  {prefix}{k} = {namelist_value(v)}" for k, v in values.items()] + ["/"]
    return "\n".join(lines) + "\n"


def initial_state_bytes(grid: GridConfig, physics: CoarsePhysicsConfig, state) -> bytes:
    """The full coarse state after `CoarseModel.set_state(state)`, as initial.bin stores one window."""
    model = CoarseModel(grid, physics)
    model.set_state(state_arrays(state))
    views = model.state_views()
    nx, ny = grid.nx, grid.ny
    s12 = np.zeros((nx + 1, ny + 1), order="F")  # (0:nx, 0:ny): the view holds the north-east corners only
    s12[1:, 1:] = views["sig12"].T
    walls = hidden_state(model)  # west-wall corners (ny + 1), south-wall corners (nx), then counters
    s12[0, :] = walls[:ny + 1]
    s12[1:, 0] = walls[ny + 1:ny + 1 + nx]
    arrays = [views[k].T for k in STATE_NAMES] + [s12]
    return b"".join(np.asarray(a, dtype=np.float64).tobytes(order="F") for a in arrays)


def write_bytes(path: Path, data: bytes) -> None:
    """`data` at `path`, never half-written."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def forcing_tables(forcing, grid: GridConfig, start_indices: Sequence[int], n_steps: int):
    """(records (n, nx, ny, n_forcing) float64, pairs int32 (n_windows, n_steps, 2) of 1-based records): every
    distinct forcing snapshot the windows use, once."""
    records: list[np.ndarray] = []
    index: dict[bytes, int] = {}
    pairs = np.zeros((len(start_indices), n_steps, 2), dtype=np.int32)
    shape = (grid.ny, grid.nx)
    for w, start in enumerate(start_indices):
        for n in range(n_steps):
            for end, snapshot in enumerate(forcing.pair(start + n)):
                packed = np.zeros((grid.nx, grid.ny, len(FORCING_VARIABLES)), dtype=np.float64, order="F")
                pack_forcing(snapshot, packed, shape, f"t{end}")
                key = packed.tobytes(order="F")
                if key not in index:
                    index[key] = len(records) + 1
                    records.append(packed)
                pairs[w, n, end] = index[key]
    return records, pairs


def write_kit(grid: GridConfig, physics: CoarsePhysicsConfig, couple: CoupleConfig, initial_state, forcing_source,
              out_dir: str | Path, tiles: tuple[int, int] = (1, 1)) -> Path:
    """Write kit.nml, forcing.bin, forcing_pairs.bin and initial.bin into `out_dir` (created); returns it.
    The same checks as `icecorr couple` run first (forcing window and grid, finite values, initial states)."""
    if couple.perturbed_physics:
        raise InputError(None, f"couple.{couple.perturbed_physics[0]}", "the standalone Fortran driver runs every "
                               "member with the physics section's parameters; remove it for `icecorr fortran-kit`")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    forcing = open_forcing(forcing_source)
    shape = (grid.ny, grid.nx)
    for s in couple.start_indices:
        forcing.check_window(s, couple.steps)
    if isinstance(initial_state, StateFile):  # a plain state file: its record at each window's start
        initial_state = initial_state.window_states([forcing.time(s) for s in couple.start_indices])
    preflight_inputs(forcing, couple, shape, initial_state)
    states = window_states(initial_state, couple.start_indices, shape=shape)
    records, pairs = forcing_tables(forcing, grid, couple.start_indices, couple.steps)
    write_bytes(out / "forcing.bin", b"".join(r.tobytes(order="F") for r in records))
    write_bytes(out / "forcing_pairs.bin", pairs.tobytes(order="C"))  # C (w, n, end) = Fortran (end, n, w)
    write_bytes(out / "initial.bin", b"".join(initial_state_bytes(grid, physics, s) for s in states))
    run = {"nx": grid.nx, "ny": grid.ny, "dx": float(grid.dx), "n_steps": couple.steps, "members": couple.members,
           "n_windows": len(couple.start_indices), "n_records": len(records), "step_seconds": float(STEP_SECONDS),
           "tiles_y": int(tiles[0]), "tiles_x": int(tiles[1]), "timeout_step": float(couple.timeouts.step),
           "timeout_handshake": float(couple.timeouts.handshake)}
    text = (namelist_group("kit", run) + namelist_group("coarse", physics.fortran_values(), "pd%")
            + namelist_group("thermo", physics.thermo.model_dump(), "tp%"))
    write_bytes(out / "kit.nml", text.encode())
    return out
