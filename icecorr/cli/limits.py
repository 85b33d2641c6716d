"""Up-front checks of what a verb is about to read and allocate (issue 21): an input path that is not a regular file
(a folder, a symbolic link loop, a device) and an ensemble that cannot fit in memory are refused with one line
before any work, instead of "does not exist" or a MemoryError halfway through with a partial output.
"""
from __future__ import annotations

import os
import resource
from typing import Mapping

from icecorr.base.errors import InputError
from icecorr.base.files import describe_unreadable, open_netcdf

#: peak memory per ensemble member and grid cell of `couple`/`emulate` (bytes): measured ≈ 830 for couple and ≈ 490
#: for emulate (16² grid, 1000–4000 members: states, forecasts, corrector samples, output buffers), rounded up
ENSEMBLE_BYTES_PER_MEMBER_CELL = 1024
#: peak memory per member, record and grid cell of `correct` (bytes) for `correct.chunk_size` records at once:
#: measured ≈ 100 (16² grid, 2000 members), rounded up
CORRECT_BYTES_PER_MEMBER_RECORD_CELL = 160


def refuse_odd_inputs(inputs: Mapping[str, object]) -> None:
    """InputError for an input path that exists (or is a link) but is not a regular file; missing files are left to
    the readers, which say which file they wanted."""
    for role, path in inputs.items():
        if path is None:
            continue
        why = describe_unreadable(str(path))
        if why and why != "does not exist":
            raise InputError(str(path), None, f"{role} {why}")


def available_memory_bytes() -> int | None:
    """Memory this process may still take (bytes): the system's MemAvailable, lowered by an address-space limit
    (`ulimit -v`, a batch system's cap) minus what the process already maps; None when unknown."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm") as f:
                mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            mapped = 0
        found.append(max(soft - mapped, 0))
    return min(found) if found else None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def require_memory(needed: float, file: str | None, field: str, what: str, advice: str) -> None:
    """InputError naming `field` when `needed` bytes exceed the available memory."""
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise InputError(file, field, f"{what} need about {_gib(needed)} of memory, but {_gib(available)} are "
                                      f"available: {advice}")


def _grid_cells(path, fallback: tuple[int, int]) -> tuple[int, int, int]:
    """(records, ny, nx) of a NetCDF input (its time, y and x sizes), or (1, *fallback) if it cannot be read yet
    (the run then reports the file itself)."""
    try:
        with open_netcdf(path) as ds:
            return int(ds.sizes.get("time", 1)), int(ds.sizes.get("y", fallback[0])), int(ds.sizes.get("x", fallback[1]))
    except InputError:
        return 1, *fallback


def check_ensemble_memory(cfg, config: str | None) -> None:
    """`couple`/`emulate`: refuse `couple.members` whose states would not fit in memory (grid of the initial file,
    else the config's grid)."""
    members = cfg.couple.members
    _, ny, nx = _grid_cells(cfg.initial, (cfg.grid.ny, cfg.grid.nx))
    require_memory(members * ny * nx * ENSEMBLE_BYTES_PER_MEMBER_CELL, config, "couple.members",
                   f"{members} members on a {ny}×{nx} grid (≈{ENSEMBLE_BYTES_PER_MEMBER_CELL} bytes per member and "
                   f"cell)", "use fewer members")


def check_correct_memory(correct, forecasts, config: str | None) -> None:
    """`correct`: refuse `correct.members` × `correct.chunk_size` records that would not fit in memory."""
    n_t, ny, nx = _grid_cells(forecasts, (1, 1))
    records = max(1, min(correct.chunk_size, n_t))
    require_memory(correct.members * records * ny * nx * CORRECT_BYTES_PER_MEMBER_RECORD_CELL, config,
                   "correct.members", f"{correct.members} members × {records} records (correct.chunk_size) on a "
                   f"{ny}×{nx} grid (≈{CORRECT_BYTES_PER_MEMBER_RECORD_CELL} bytes per member, record and cell)",
                   "use fewer members or a smaller correct.chunk_size")
