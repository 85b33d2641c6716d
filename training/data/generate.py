"""Twin-experiment training pairs (`icecorr generate`, physics.md §2.4 and §5).

For every configured run (one seed = one truth trajectory = one calendar year of the time axis):

1. build the synthetic forcing on the fine grid (`training.data.forcing`), start the BBM truth from compact ice with a
   smooth random thickness field, spin it up (`spinup_days`, discarded);
2. every 12 h take x_t = C(truth_t) (`training.data.coarsegrain`), run the coarse model 12 h from x_t with the
   block-mean forcing, and store x_t (`initial_*`), the forecast (`forecast_*`), C(truth_{t+12h}) (`reference_*`),
   reference − forecast (`residual_*`, computed in float64), damage, and the coarse forcing at t and t+12 h.

On a real region (`region:` in the config) the two grids, their consistent land masks and latitudes come from
`training.data.region_twin`, the forcing from `training.data.region_forcing`, the truth is coarse-grained with its
mask, and the pair files carry the mask, lat/lon, x/y and the CF grid mapping (`training.data.geography`).

The coarse model starts every re-forecast with zero stresses: its mEVP stresses re-converge within the first
substeps, the truth's BBM stresses belong to another rheology (feeding them to VP would inject a foreign state),
and real reference data (`icecorr prepare`) have no VP stresses either, so generated and prepared pairs match.
Surface and mixed-layer temperatures are taken from the coarse-grained truth, and every re-forecast uses a fresh
coarse model, so no state (e.g. the alternating transport split order) leaks between windows.

With `drift_segment_days` > 0, the runs of `drift_splits` also get drift windows (`training.data.drift`): the coarse
model's free run restarted from the reference every segment, so the corrector sees the states a coupled run drifts
into.

Runs are distributed round-robin over MPI ranks; each rank writes its runs to part files, rank 0 concatenates them
per split in run order (`train.nc`, `val.nc`, `test.nc`) and writes `manifest.json`. Every run depends only on its
seed and config, so the files are identical for any number of ranks. A part is named by its run's fingerprint (the
config and the run, `run_fingerprint`), so an interrupted generation started again into the same folder keeps the
runs it finished (a 25 km Arctic year costs tens of minutes) and redoes only the others.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import xarray as xr

from fortran_stub.config import GridConfig
from icecorr.base.version import package_version
from icecorr.base.files import write_json_atomic
from icecorr.base.progress import progress as show_progress
from icecorr.base.variables import ML_VARIABLES, STEP_SECONDS
from training.data.coarsegrain import block_mean, coarsen_state
from training.data.config import GenerateConfig, InitialIceConfig
from training.data.drift import segment_steps, with_drift_pairs
from training.data.forcing import FORCING_METADATA, FORCING_NAMES, SyntheticForcing, gaussian_filter
from training.data.geography import attach_geography
from training.data.io import concat_netcdf_along_time, write_netcdf_atomic
from training.data.pairs import SPLITS, PairBuffer, pair_dataset, state_arrays, state_metadata
from training.data.provenance import pair_file_attrs
from training.data.ranks import finish
from training.data.region_forcing import RegionForcing
from training.data.region_twin import TwinGrids, region_twin_grids
from training.data.residual_stats import format_summary, residual_summary

PRODUCER = "icecorr generate"

#: coarse-model variables taken from the coarse-grained truth at every re-forecast start
_TRUTH_TO_COARSE = ("sic", "sit", "snt", "siu", "siv", "tsi", "tos")
#: coarse stresses reset at every re-forecast start
_COARSE_STRESSES = ("sig1", "sig2", "sig12")


class TwinConfigLike(Protocol):
    """What `run_generate` needs from the composed run config."""

    grid: GridConfig
    physics: Any  # coarse physics config (CoarsePhysicsConfig)
    truth: Any  # truth physics config (TruthPhysicsConfig)
    forcing: Any  # ForcingConfig
    generate: GenerateConfig


@dataclass(frozen=True)
class RunSpec:
    """One truth run: its split, seed, position in the global run list and the start of its spin-up."""

    split: str
    seed: int
    index: int
    start: datetime


def plan_runs(gen: GenerateConfig) -> list[RunSpec]:
    """All runs in a fixed order (train, val, test; seeds as listed); run i starts i calendar years after `start`
    so that the time axis is unique across runs and files."""
    start = datetime.fromisoformat(gen.start)
    runs: list[RunSpec] = []
    for split in SPLITS:
        for seed in getattr(gen.seeds, split):
            i = len(runs)
            runs.append(RunSpec(split, int(seed), i, start.replace(year=start.year + i)))
    return runs


def initial_truth_state(init: InitialIceConfig, grid: GridConfig, seed: int) -> dict[str, np.ndarray]:
    """Compact ice (A in [lo, hi]) with thickness h in [lo, hi] following a smooth random field of the configured
    correlation length, uniform snow, ice at rest, undamaged (d = 1). Arrays (ny, nx) float64."""
    rng = np.random.default_rng([seed, 1001])
    amp, _, _ = gaussian_filter(grid.ny, grid.nx, grid.dx, init.length_scale)

    def smooth01() -> np.ndarray:
        f = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((grid.ny, grid.nx))) * amp, s=(grid.ny, grid.nx))
        f -= f.min()
        return f / max(f.max(), 1e-300)

    c, h = init.concentration, init.thickness
    zeros = np.zeros((grid.ny, grid.nx))
    return {
        "sic": c.lo + (c.hi - c.lo) * smooth01(),
        "sit": h.lo + (h.hi - h.lo) * smooth01(),
        "snt": np.full((grid.ny, grid.nx), init.snow_thickness),
        "siu": zeros.copy(), "siv": zeros.copy(),
        "damage": np.ones((grid.ny, grid.nx)),
    }


def twin_grids(cfg: TwinConfigLike) -> TwinGrids:
    """The coarse and truth grids: on a region (`cfg.region`) with masks and latitudes from the coastline data
    (`training.data.region_twin`), else `cfg.grid` and its refinement (the box)."""
    r = cfg.generate.refinement
    region = getattr(cfg, "region", None)
    if region is not None:
        return region_twin_grids(region, r)
    return TwinGrids(cfg.grid, cfg.grid.refined(r))


def coarse_grained(truth_state, r: int, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """C(truth state): the ML variables, damage and the thermodynamic state the coarse model needs; `mask`: the
    truth grid's ocean mask (None = all ocean)."""
    s = state_arrays(truth_state)
    keep = {k: s[k] for k in ("sic", "sivol", "snvol", "sit", "snt", "siu", "siv", "damage", "tsi", "tos")
            if k in s}
    if "sivol" in keep:  # volumes are what coarse-graining conserves; thicknesses are rebuilt from them
        keep.pop("sit", None)
    if "snvol" in keep:
        keep.pop("snt", None)
    return coarsen_state(keep, r, mask=mask)


def window_mean_velocity(truth, state: xr.Dataset, r: int, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """C(truth velocity averaged over the last 12 h step): siu/siv (m s-1) coarse-grained like the state's, land
    faces included (the instantaneous BBM velocity rings elastically; its window mean is what moved the ice)."""
    ubar, vbar = truth.mean_velocity()
    mean = coarse_grained(state.assign(siu=(state["siu"].dims, ubar), siv=(state["siv"].dims, vbar)), r, mask)
    return {"siu": mean["siu"], "siv": mean["siv"]}


def coarse_start_state(initial: Mapping[str, np.ndarray], coarse_vars: set[str]) -> dict[str, np.ndarray]:
    """The coarse model's state at a re-forecast start: C(truth) where the coarse model has the variable, zero
    stresses."""
    out = {k: initial[k] for k in _TRUTH_TO_COARSE if k in initial and k in coarse_vars}
    shape = initial["sic"].shape
    for k in _COARSE_STRESSES:
        if k in coarse_vars:
            out[k] = np.zeros(shape)
    return out


def default_models() -> tuple[type, type]:
    """(coarse, truth) model classes of `coupling` (imported on first use: the Fortran extension loads then)."""
    from coupling.bridge import CoarseModel
    from coupling.truth import TruthModel
    return CoarseModel, TruthModel


def simulate_run(cfg: TwinConfigLike, spec: RunSpec, progress: Callable[[int], None] | None = None,
                 models: tuple[type, type] | None = None, grids: TwinGrids | None = None, forcing=None,
                 initial: Mapping[str, np.ndarray] | None = None) -> xr.Dataset:
    """Spin up one truth run and return its training pairs (time, y, x) as a Dataset in the storage dtype.
    `grids`: the twin's grids (default `twin_grids(cfg)`); `forcing`: the truth-grid forcing, any object with
    `truth_at(k)` and `time(k)` (default: the synthetic or region forcing of `cfg`); `initial`: the truth's initial
    state (default `initial_truth_state`). The last two let analytic cases (training.evaluation.idealised) run
    through the same twin."""
    gen: GenerateConfig = cfg.generate
    r = gen.refinement
    grids = grids or twin_grids(cfg)
    fine, grid = grids.fine, grids.coarse
    fine_mask = fine.ocean_mask() if fine.has_land() else None
    coarse_cls, truth_cls = models or default_models()
    n_total = gen.n_spinup + gen.n_windows + 1
    if forcing is None and grids.fine_geo is not None:
        forcing = RegionForcing(cfg.forcing, grids.fine_geo, spec.start, n_total, spec.seed)
    elif forcing is None:
        forcing = SyntheticForcing(cfg.forcing, fine, spec.start, n_total, spec.seed)

    truth = truth_cls(fine, cfg.truth, spec.seed)
    truth.set_state(initial_truth_state(gen.initial, fine, spec.seed) if initial is None else initial)
    carry = gen.coarse_stress_start == "carry"
    persistence = gen.forecast == "persistence"  # emulator pairs: no coarse model runs
    coarse = coarse_cls(grid, cfg.physics)
    coarse_vars = set(coarse.get_state().data_vars)

    def coarse_forecast(start_state: Mapping, fc0: Mapping, fc1: Mapping) -> dict[str, np.ndarray]:
        """12 h coarse forecast from C(truth). In carry mode the model keeps its own stresses (as in a coupled
        run after a correction); in zero mode a fresh model starts from zero stresses."""
        nonlocal coarse
        start = coarse_start_state(start_state, coarse_vars)
        if carry:
            start = {k: v for k, v in start.items() if k not in _COARSE_STRESSES}
        else:
            coarse = coarse_cls(grid, cfg.physics)  # fresh (< 1 ms): no hidden state leaks between windows
        coarse.set_state(start)
        coarse.step(fc0, fc1)
        return state_arrays(coarse.get_state())

    f_now = forcing.truth_at(0)
    first_cycled = gen.n_spinup - min(gen.coarse_spinup_steps, gen.n_spinup) if carry else gen.n_spinup
    for k in range(gen.n_spinup):
        f_next = forcing.truth_at(k + 1)
        if k >= first_cycled and not persistence:  # develop the coarse model's stresses before the first recorded window
            coarse_forecast(coarse_grained(truth.get_state(), r, fine_mask), {n: block_mean(a, r) for n, a in f_now.items()},
                            {n: block_mean(a, r) for n, a in f_next.items()})
        truth.step(f_now, f_next)
        f_now = f_next
        if progress:
            progress(1)

    with_mean = hasattr(truth, "mean_velocity")
    buf = PairBuffer(gen.n_windows, grid.ny, grid.nx, FORCING_NAMES, gen.dtype, with_mean_velocity=with_mean)
    current = coarse_grained(truth.get_state(), r, fine_mask)
    fc_now = {name: block_mean(a, r) for name, a in f_now.items()}
    for w in range(gen.n_windows):
        f_next = forcing.truth_at(gen.n_spinup + w + 1)
        fc_next = {name: block_mean(a, r) for name, a in f_next.items()}  # the coarse model's forcing
        truth.step(f_now, f_next)
        state = truth.get_state()
        reference = coarse_grained(state, r, fine_mask)
        forecast = current if persistence else coarse_forecast(current, fc_now, fc_next)
        buf.put(w, current, forecast, reference, fc_now, fc_next, window_mean_velocity(truth, state, r, fine_mask)
                if with_mean else None)
        current, f_now, fc_now = reference, f_next, fc_next
        if progress:
            progress(1)

    times = np.array([np.datetime64(forcing.time(gen.n_spinup + w), "ns") for w in range(gen.n_windows)])
    ds = pair_dataset(buf, times, grid.dx, grid.ocean_mask().astype(np.int8))
    ds["run"] = ("time", np.full(gen.n_windows, spec.index, dtype=np.int32),
                 {"long_name": "run (truth trajectory) index; windows never cross runs"})
    ds["run_seed"] = ("time", np.full(gen.n_windows, spec.seed, dtype=np.int64), {"long_name": "seed of the run"})
    return ds


#: the config sections that define a twin experiment (stored in every file it writes)
TWIN_SECTIONS = ("grid", "physics", "truth", "forcing", "generate")


def _file_attrs(cfg, split: str) -> dict[str, object]:
    """Global attributes of a twin pair file: provenance, refinement and the coarse stress start."""
    attrs = pair_file_attrs(cfg, split, PRODUCER, TWIN_SECTIONS)
    gen = getattr(cfg, "generate", None)
    if gen is not None:
        attrs.update(refinement=int(gen.refinement), coarse_stress_start=gen.coarse_stress_start,
                     forecast=gen.forecast)
    return attrs


def run_fingerprint(cfg, run: RunSpec) -> str:
    """Hex digest of what a run's pairs depend on: the generation config (without the seed lists: the run's own
    split, seed, position and start are in it) and the package version. Equal digests = the same part file."""
    if hasattr(cfg, "model_dump"):
        data = cfg.model_dump(mode="json")
    else:
        data = {k: getattr(cfg, k).model_dump(mode="json") for k in (*TWIN_SECTIONS, "region")
                if hasattr(getattr(cfg, k, None), "model_dump")}
    data.get("generate", {}).pop("seeds", None)
    data["run"] = [run.split, run.seed, run.index, run.start.isoformat()]
    data["icecorr_version"] = package_version()
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def part_path(parts_dir: Path, cfg, run: RunSpec) -> Path:
    """The part file of `run` in `parts_dir`: a finished run of this config, reusable after an interruption."""
    return parts_dir / f"run-{run.index:04d}-{run_fingerprint(cfg, run)}.nc"


def run_generate(cfg: TwinConfigLike, out_dir: str | Path, comm=None, progress: bool | None = None,
                 models: tuple[type, type] | None = None) -> list[Path]:
    """Generate `train.nc`, `val.nc`, `test.nc` (splits with seeds) and `manifest.json` in `out_dir`.

    `comm`: an mpi4py communicator (None = serial). Runs go round-robin over ranks; all ranks return the same list
    of paths. Runs whose part file (`part_path`) an interrupted call left in `out_dir/.parts` are not run again.
    `progress`: tqdm bar on rank 0 (default: only when stderr is a terminal). `models`: (coarse, truth) classes to
    use instead of `coupling.bridge` (tests).
    """
    out_dir = Path(out_dir)
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    t_start = time.perf_counter()
    runs = plan_runs(cfg.generate)
    mine = [run for run in runs if run.index % size == rank]
    parts_dir = out_dir / ".parts"
    parts = {run.index: part_path(parts_dir, cfg, run) for run in runs}
    if rank == 0:
        parts_dir.mkdir(parents=True, exist_ok=True)
    if comm is not None:
        comm.Barrier()
    steps_per_run = cfg.generate.n_spinup + cfg.generate.n_windows
    bar = show_progress(total=steps_per_run * len(mine), desc="generate (rank 0)", unit="step", leave=False,
                        enabled=progress if rank == 0 else False)
    error: str | None = None
    try:
        grids = twin_grids(cfg) if mine else None
        for run in mine:
            if parts[run.index].is_file():  # finished before an interruption (written atomically)
                print(f"generate: run {run.index} ({run.split}, seed {run.seed}): reusing {parts[run.index]}",
                      flush=True)
                bar.update(steps_per_run)
                continue
            ds = simulate_run(cfg, run, bar.update, models, grids)
            gen = cfg.generate
            if gen.drift_segment_days > 0 and run.split in gen.drift_splits:
                ds = with_drift_pairs(ds, segment_steps(gen.drift_segment_days), cfg.physics,
                                      (models or default_models())[0])
            if grids.coarse_geo is not None:  # lat/lon, x/y and the CF grid mapping of the region
                ds = attach_geography(ds, grids.coarse_geo, with_fields=False)
            write_netcdf_atomic(ds, parts[run.index], cfg.generate.chunk_time, cfg.generate.dtype)
    except Exception as exc:  # every rank must learn about a failure, or the others wait forever
        error = f"rank {rank}: {type(exc).__name__}: {exc}"
        if comm is None:
            raise
    finally:
        bar.close()
    finish(comm, error, "generate", collective=True)

    paths = [out_dir / f"{split}.nc" for split in SPLITS if getattr(cfg.generate.seeds, split)]
    failure = None
    if rank == 0:
        try:
            for split, path in zip([s for s in SPLITS if getattr(cfg.generate.seeds, s)], paths):
                concat_netcdf_along_time([parts[run.index] for run in runs if run.split == split], path,
                                         _file_attrs(cfg, split))
            shutil.rmtree(parts_dir, ignore_errors=True)
            elapsed = time.perf_counter() - t_start
            summary = residual_summary({p.stem: p for p in paths})
            write_manifest(cfg, out_dir, runs, paths, summary, elapsed, size)
            print(format_summary(summary, elapsed, size), flush=True)
        except Exception as exc:
            failure = f"rank 0 (gathering): {type(exc).__name__}: {exc}"
            if comm is None:
                raise
    finish(comm, failure, "generate")
    return paths


def write_manifest(cfg, out_dir: Path, runs: list[RunSpec], paths: list[Path], summary: Mapping[str, Any],
                   elapsed: float, n_ranks: int) -> Path:
    """`manifest.json`: variables with units, grid, splits (files, seeds, windows), generator config, statistics."""
    gen: GenerateConfig = cfg.generate
    variables = {}
    for v, meta in state_metadata().items():
        for prefix in ("initial_", "forecast_", "reference_", "residual_"):
            if v in ML_VARIABLES or prefix in ("initial_", "reference_"):
                variables[prefix + v] = meta
    for f in FORCING_NAMES:
        units, std_name, long_name = FORCING_METADATA[f]
        for suffix in ("_t0", "_t1"):
            variables[f + suffix] = {"units": units, "long_name": long_name}
    manifest = {
        "producer": PRODUCER,
        "icecorr_version": package_version(),
        "grid": {**cfg.grid.model_dump(mode="json"), "refinement": gen.refinement},
        "time_step_seconds": STEP_SECONDS,
        "ml_variables": list(ML_VARIABLES),
        "forcing_variables": list(FORCING_NAMES),
        "variables": variables,
        "splits": {
            split: {"file": f"{split}.nc", "seeds": [r.seed for r in runs if r.split == split],
                    "runs": [r.index for r in runs if r.split == split],
                    "windows_per_run": gen.n_windows,
                    "run_starts": [r.start.isoformat() for r in runs if r.split == split]}
            for split in SPLITS if getattr(gen.seeds, split)},
        "config": {k: getattr(cfg, k).model_dump(mode="json") for k in TWIN_SECTIONS
                   if hasattr(getattr(cfg, k, None), "model_dump")},
        "statistics": summary,
        "generation": {"seconds": round(elapsed, 2), "ranks": n_ranks},
    }
    return write_json_atomic(manifest, out_dir / "manifest.json")


