"""`icecorr correct`: offline correction of coarse forecasts in a pair/forecast file.

    run_correct(cfg, forecasts_path, out_path, comm=WORLD) -> Path

Writes `cfg.members` corrected members per forecast record (time = valid time), streaming in chunks of
`cfg.chunk_size` records; under MPI chunk c is computed by rank c mod size and rank 0 writes, in order.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import xarray as xr

from corrector.seeding import member_seeds
from icecorr.base.errors import InputError
from icecorr.base.files import open_netcdf
from icecorr.base.mpi import resolve_comm
from icecorr.base.progress import progress
from .config import CorrectConfig
from .ensemble import check_mode, load_corrector
from .ensemble_output import checkpoint_attrs, global_attrs
from .forcing import STEP
from .grid_metadata import grid_metadata
from .layout import WORLD
from .member_fields import check_members_finite
from .output import TrajectoryWriter, to_datetime
from .pairs import pair_conditioning, preflight_pairs
from .transport import TAG_FIELDS, abort_on_error, wait_all


def _correct_chunk(corrector, ds: xr.Dataset, path: Path, t0: int, t1: int, cfg: CorrectConfig,
                   mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(corrected (T, M, n_vars, ny, nx), forecast (T, n_vars, ny, nx)) for time records t0…t1−1."""
    variables = list(corrector.variables)
    chunk = ds.isel(time=slice(t0, t1))
    cond = pair_conditioning(corrector, ds, path, slice(t0, t1), mask)
    forecast = np.stack([chunk[f"forecast_{v}"].values.astype(np.float64) for v in variables], axis=1)
    seeds = member_seeds(cfg.seed, np.arange(t0, t1), 0, cfg.members)
    sample = corrector.sample(cond, members=cfg.members, steps=cfg.sampler_steps, seeds=seeds)
    new = corrector.apply({v: forecast[:, i] for i, v in enumerate(variables)}, sample, mask=mask)
    return np.stack([new[v] for v in variables], axis=2), forecast


def run_correct(cfg: CorrectConfig, forecasts_path: str | Path, out_path: str | Path, comm=WORLD, *,
                corrector=None, command: str | None = None, config_text: str | None = None) -> Path:
    """Offline correction of coarse forecasts (a training-pair file or any file with `forecast_{v}`, the initial
    state and forcing at both window ends): writes `cfg.members` corrected members per forecast, time = valid time.

    Streams in chunks of `cfg.chunk_size` records; under MPI chunk c is computed by rank c mod size and rank 0
    writes, in order.
    """
    world = resolve_comm(comm)
    rank = world.Get_rank() if world is not None else 0
    size = world.Get_size() if world is not None else 1
    out_path = Path(out_path)
    with abort_on_error("correct", rank, "ml", world):
        run_comm = world.Dup() if size > 1 else None
        try:
            _correct(cfg, run_comm, rank, size, Path(forecasts_path), out_path, corrector, command, config_text)
        finally:
            if run_comm is not None:
                run_comm.Free()
    return out_path


def _correct(cfg, comm, rank, size, path: Path, out_path: Path, corrector, command, config_text) -> None:
    """The body of `run_correct` on one rank (`comm` None in one process)."""
    if not path.exists():
        raise InputError(str(path), None, "forecast file does not exist")
    if corrector is None:
        corrector = load_corrector(cfg.checkpoint, "residual")
    check_mode(corrector, "residual", "icecorr correct")
    variables = list(corrector.variables)
    ds = open_netcdf(path, "forecast file")
    try:
        mask = preflight_pairs(ds, path, corrector, variables, check_values=rank == 0)
        n_t, ny, nx = ds[f"forecast_{variables[0]}"].shape
        times = ds["time"].values
        chunks = [(lo, min(lo + cfg.chunk_size, n_t)) for lo in range(0, n_t, cfg.chunk_size)]
        m, nv = cfg.members, len(variables)
        pending: list = []
        writer = None
        if rank == 0:
            attrs = checkpoint_attrs(corrector, variables)
            declared = dict(attrs)
            if cfg.output_options.write_forecast:
                declared.update({f"forecast_{v}": {**attrs[v], "_member": False,
                                                   "long_name": f"uncorrected 12 h forecast of {v}"}
                                 for v in variables})
            if cfg.output_options.write_correction:
                declared.update({f"correction_{v}": {"units": attrs[v]["units"],
                                                     "long_name": f"applied correction of {v} (after bounds)"}
                                 for v in variables})
            gattrs = global_attrs("correct", cfg, corrector, command, config_text)
            gattrs.update(source_file=str(path), time_meaning="valid time: input window start + 12 h",
                          seeding=f"seed={cfg.seed}; corrector.seeding.member_seeds(seed, input time index, 0, "
                                  f"members)[member]")
            dx = float(ds.attrs.get("grid_dx", float(ds["x"][1] - ds["x"][0]) if "x" in ds and ds.sizes["x"] > 1
                                    else 1.0))
            start = to_datetime(times[0]) if n_t else datetime(2000, 10, 1)
            writer = TrajectoryWriter(out_path, declared, m, ny, nx, dx, start, gattrs, cfg.output_options.precision,
                                      grid=grid_metadata(ds))
        status = "failed"
        try:
            # a bar on the writing rank only (it writes every chunk, in order)
            bar = progress(chunks, desc="correct", unit="chunk", enabled=None if rank == 0 else False)
            for c, (t0, t1) in enumerate(bar):
                owner = c % size
                if owner == rank:
                    corrected, forecast = _correct_chunk(corrector, ds, path, t0, t1, cfg, mask)
                    check_members_finite(f"corrected chunk {t0}…{t1 - 1}", corrected.reshape(-1, nv, ny, nx), variables,
                                 range((t1 - t0) * m), m)
                    if rank != 0:
                        # keep at most two chunks in flight so a slow writer bounds the memory
                        while len(pending) >= 2:
                            wait_all([pending[0][0]], cfg.timeout, "chunk delivery to rank 0", rank)
                            pending.pop(0)
                        buf = np.ascontiguousarray(np.concatenate([corrected.reshape(-1), forecast.reshape(-1)]))
                        pending.append((comm.Isend(buf, dest=0, tag=TAG_FIELDS), buf))
                        continue
                elif rank == 0:
                    buf = np.empty((t1 - t0) * (m + 1) * nv * ny * nx)
                    wait_all([comm.Irecv(buf, source=owner, tag=TAG_FIELDS)], cfg.timeout,
                             f"corrected chunk {t0}…{t1 - 1} from rank {owner}", rank)
                    n_c = (t1 - t0) * m * nv * ny * nx
                    corrected = buf[:n_c].reshape(t1 - t0, m, nv, ny, nx)
                    forecast = buf[n_c:].reshape(t1 - t0, nv, ny, nx)
                else:
                    continue
                for i in range(t1 - t0):
                    fields = {v: corrected[i, :, k] for k, v in enumerate(variables)}
                    if cfg.output_options.write_forecast:
                        fields.update({f"forecast_{v}": forecast[i, k] for k, v in enumerate(variables)})
                    if cfg.output_options.write_correction:
                        fields.update({f"correction_{v}": corrected[i, :, k] - forecast[i, k][None]
                                       for k, v in enumerate(variables)})
                    writer.append(to_datetime(times[t0 + i]) + STEP, 1, fields)
            wait_all([p[0] for p in pending], cfg.timeout, "chunk delivery to rank 0", rank)
            status = "complete"
        finally:
            if writer is not None:
                writer.close(status)
    finally:
        ds.close()
