"""The twin's predictability floor (`icecorr floor`): how much of the coarse model's error no corrector can remove.

From exact fine (BBM) truth states at `floor.starts` start dates of one run of the twin (the test seed by default),
an ensemble of `floor.members` truth runs of `floor.lead_days` in which only what the coarse model cannot know is
redrawn per member (`training.data.floor_members`: within-block wind noise, static cohesion, damage within each
coarse block). Every member is coarse-grained as `icecorr generate` does. Per variable and 12 h lead:

* floor_spread: the ensemble spread, √ of the unbiased variance over members, ocean-area-weighted mean over space
  (siu/siv wall faces excluded, as `icecorr evaluate`), mean over start dates before the square root;
* coarse_rmse: the RMSE of the uncorrected coarse model started from C(truth) at the same start dates with the
  block-mean forcing, as the demo's 'coarse' runs start it (a fresh model, zero stresses, the ML variables), pooled
  the same way; coarse_rmse_pairs: the same for the coarse model as generate's re-forecasts start it (in carry mode
  with the stresses of the coarse model cycled along the truth: its 12 h forecast is the pair files' `forecast_*`);
* floor_ratio = floor_spread / coarse_rmse (and floor_ratio_pairs). The 12 h value is the RMSE / coarse RMSE a
  perfect corrector cannot beat: floor_ratio for coupled runs, floor_ratio_pairs for offline 12 h corrections.

Start dates go round-robin over MPI ranks; each rank runs the deterministic truth from the spin-up through its own
starts (the truth trajectory is the truth's, whoever runs it), members draw from (seed, start, member), and rank 0
pools in start order: the file is identical for any number of ranks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import xarray as xr

from coupling.member_fields import hidden_state, restore_state, set_hidden_state
from icecorr.base.files import write_dataset_atomic
from icecorr.base.variables import ML_VARIABLES, STEP_HOURS, attrs
from icecorr.base.version import package_version
from training.data.coarsegrain import block_mean
from training.data.floor_config import FloorRunConfig
from training.data.floor_members import member_forcing, member_seeds, member_state
from training.data.forcing import SyntheticForcing
from training.data.generate import (RunSpec, coarse_grained, coarse_start_state, default_models, initial_truth_state,
                                    plan_runs, twin_grids)
from training.data.pairs import state_arrays
from training.data.ranks import finish
from training.data.region_forcing import RegionForcing
from training.data.region_twin import TwinGrids

PRODUCER = "icecorr floor"


def floor_run(cfg: FloorRunConfig) -> RunSpec:
    """The run of the twin the floor is measured on (`floor.split`, `floor.run`)."""
    runs = [r for r in plan_runs(cfg.generate) if r.split == cfg.floor.split]
    if cfg.floor.run >= len(runs):
        raise ValueError(f"floor.run = {cfg.floor.run} but generate.seeds.{cfg.floor.split} has {len(runs)} seed(s)")
    return runs[cfg.floor.run]


def start_windows(n_windows: int, n_starts: int, n_lead: int) -> list[int]:
    """Window indices (12 h steps after the spin-up) of `n_starts` start dates evenly spread so that every
    ensemble of `n_lead` steps ends inside the run."""
    last = n_windows - n_lead
    if last < 0:
        raise ValueError(f"floor.lead_days needs {n_lead} steps but the run has {n_windows} windows")
    starts = sorted({round(i * last / max(n_starts - 1, 1)) for i in range(n_starts)})
    if len(starts) < n_starts:
        raise ValueError(f"the run has room for only {len(starts)} distinct start dates of {n_lead}-step ensembles")
    return starts


def twin_forcing(cfg, grids: TwinGrids, spec: RunSpec, n_steps: int, seed: int) -> SyntheticForcing:
    """The fine forcing of run `spec` as `icecorr generate` builds it, with its random parts drawn from `seed`."""
    if grids.fine_geo is not None:
        return RegionForcing(cfg.forcing, grids.fine_geo, spec.start, n_steps, seed)
    return SyntheticForcing(cfg.forcing, grids.fine, spec.start, n_steps, seed)


def ml_fields(state: Mapping[str, np.ndarray]) -> np.ndarray:
    """The ML variables of a coarse state stacked (variable, y, x)."""
    return np.stack([np.asarray(state[v], dtype=np.float64) for v in ML_VARIABLES])


def score_weights(ocean: np.ndarray) -> np.ndarray:
    """(variable, y, x) weights of the ML variables: the coarse ocean cells, without siu's east wall column and
    siv's north wall row (always 0), as `icecorr evaluate` scores them."""
    w = np.stack([np.asarray(ocean, dtype=np.float64)] * len(ML_VARIABLES))
    w[ML_VARIABLES.index("siu"), :, -1] = 0.0
    w[ML_VARIABLES.index("siv"), -1, :] = 0.0
    return w


def spatial_mean(field: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over (y, x) of (…, variable, y, x) with per-variable weights (variable, y, x)."""
    return (field * weights).sum(axis=(-2, -1)) / weights.sum(axis=(-2, -1))


class FloorRank:
    """The deterministic truth of one run and the ensembles of the start dates this rank owns."""

    def __init__(self, cfg: FloorRunConfig, models: tuple[type, type] | None = None):
        self.cfg, self.gen, self.fl = cfg, cfg.generate, cfg.floor
        self.r = cfg.generate.refinement
        self.spec = floor_run(cfg)
        self.grids = twin_grids(cfg)
        self.fine_mask = self.grids.fine.ocean_mask() if self.grids.fine.has_land() else None
        self.coarse_cls, self.truth_cls = models or default_models()
        self.n_steps = self.gen.n_spinup + self.gen.n_windows + 1
        self.forcing = twin_forcing(cfg, self.grids, self.spec, self.n_steps, self.spec.seed)
        self.weights = score_weights(self.grids.coarse.ocean_mask())

    def run(self, starts: list[int], mine: list[int], progress: Callable[[int], None] | None = None
            ) -> dict[int, tuple[np.ndarray, ...]]:
        """{position in `starts`: (spread variance, coarse squared error of the 'coarse' runs, of the pairs' coarse
        model), each (lead, variable)} of the starts at positions `mine`, from one pass of the deterministic truth
        (and, in carry mode, of the coarse model cycled along it as in generate) through them."""
        n0, L = self.gen.n_spinup, self.fl.n_lead
        todo = {n0 + starts[i]: i for i in mine}
        if not todo:
            return {}
        truth = self.truth_cls(self.grids.fine, self.cfg.truth, self.spec.seed)
        truth.set_state(initial_truth_state(self.gen.initial, self.grids.fine, self.spec.seed))
        carry = self.gen.coarse_stress_start == "carry"
        cycled = self.coarse_cls(self.grids.coarse, self.cfg.physics) if carry else None
        first_cycled = n0 - min(self.gen.coarse_spinup_steps, n0)
        open_: dict[int, dict] = {}  # start step -> its saved states, forcing and coarse-grained truth so far
        out: dict[int, tuple[np.ndarray, ...]] = {}
        f_now, noise = self.truth_forcing(0)
        for k in range(max(todo) + L + 1):
            current = coarse_grained(truth.get_state(), self.r, self.fine_mask)
            if k in todo:
                state = truth.get_state()
                open_[k] = {"state": {n: state[n].values for n in state.data_vars}, "forcing": [], "noise": [],
                            "truth": [], "start": current,
                            "cycled": (state_arrays(cycled.get_state()), hidden_state(cycled)) if carry else None}
            for k0, w in open_.items():
                if k - k0 <= L:
                    w["forcing"].append(f_now)
                    w["noise"].append(noise)
                    w["truth"].append(ml_fields(current))
            for k0 in [k0 for k0 in open_ if k - k0 == L]:
                out[todo[k0]] = self.window(todo[k0], open_.pop(k0), progress)
            if k == max(todo) + L:
                break
            f_next, noise = self.truth_forcing(k + 1)
            if carry and first_cycled <= k < max(todo):  # generate's re-forecast of this window: stresses carried
                cycled.set_state(self.coarse_start(current, cycled, with_stresses=False))
                cycled.step(*({n: block_mean(a, self.r) for n, a in f.items()} for f in (f_now, f_next)))
            truth.step(f_now, f_next)
            f_now = f_next
            if progress:
                progress(1)
        return out

    def truth_forcing(self, k: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(the truth's forcing, its subgrid wind noise) at step k; the sum as `SyntheticForcing.truth_at` makes it."""
        resolved, noise = self.forcing.resolved_at(k), self.forcing.noise_at(k)
        return dict(resolved, uas=resolved["uas"] + noise["uas_noise"], vas=resolved["vas"] + noise["vas_noise"]), noise

    def window(self, position: int, w: dict, progress: Callable[[int], None] | None) -> tuple[np.ndarray, ...]:
        """(spread variance, squared error of the 'coarse' runs, of the pairs' coarse model), each (lead, variable),
        of one start date."""
        truth = np.stack(w["truth"])  # (lead, variable, y, x)
        errors = [spatial_mean((self.coarse_forecast(w, pairs) - truth) ** 2, self.weights) for pairs in (False, True)]
        members = np.stack([self.member(position, m, w, progress) for m in range(self.fl.members)])
        return spatial_mean(members.var(axis=0, ddof=1), self.weights), *errors

    def coarse_start(self, current: Mapping[str, np.ndarray], model, with_stresses: bool) -> dict[str, np.ndarray]:
        """generate's re-forecast start state from C(truth) `current` (zero stresses, or none: the model's own)."""
        start = coarse_start_state(current, set(model.get_state().data_vars))
        return start if with_stresses else {k: v for k, v in start.items() if not k.startswith("sig")}

    def coarse_forecast(self, w: dict, pairs: bool) -> np.ndarray:
        """The uncorrected coarse model from C(truth) at the start with block-mean forcing; (lead, variable, y, x).

        pairs False, as the demo's 'coarse' runs (`icecorr couple` without a corrector): a fresh model (zero
        stresses) set to the ML variables of the pair file (in its storage dtype). pairs True, as generate's
        re-forecasts (the pair files' `forecast_*` at lead 12 h): in carry mode the model cycled along the truth
        with its stresses, in zero mode a fresh model; C(truth) with surface and ocean temperatures."""
        model = self.coarse_cls(self.grids.coarse, self.cfg.physics)
        if not pairs:
            model.set_state({v: np.asarray(w["start"][v], dtype=self.gen.dtype).astype(np.float64)
                             for v in ML_VARIABLES})
        elif w["cycled"] is not None:
            restore_state(model, w["cycled"][0])
            set_hidden_state(model, w["cycled"][1])
            model.set_state(self.coarse_start(w["start"], model, with_stresses=False))
        else:
            model.set_state(self.coarse_start(w["start"], model, with_stresses=True))
        fc = [{n: block_mean(a, self.r) for n, a in f.items()} for f in w["forcing"]]
        out = [ml_fields(state_arrays(model.get_state()))]
        for k in range(self.fl.n_lead):
            model.step(fc[k], fc[k + 1])
            out.append(ml_fields(state_arrays(model.get_state())))
        return np.stack(out)

    def member(self, position: int, m: int, w: dict, progress: Callable[[int], None] | None) -> np.ndarray:
        """Member `m` of the start at `position`, coarse-grained: (lead, variable, y, x)."""
        redraw = self.fl.redraw
        noise_seed, cohesion_seed, rng = member_seeds(self.fl.seed, position, m)
        model = self.truth_cls(self.grids.fine, self.cfg.truth, cohesion_seed if redraw.cohesion else self.spec.seed)
        model.set_state(member_state(w["state"], redraw, self.r, rng, self.fine_mask))
        source = twin_forcing(self.cfg, self.grids, self.spec, self.n_steps, noise_seed) if redraw.noise else None
        k0 = self.gen.n_spinup + self.floor_starts()[position]
        forcing = [member_forcing(f, n, source.noise_at(k0 + i) if source else None, self.r)
                   for i, (f, n) in enumerate(zip(w["forcing"], w["noise"]))]
        out = [ml_fields(coarse_grained(model.get_state(), self.r, self.fine_mask))]
        for k in range(self.fl.n_lead):
            model.step(forcing[k], forcing[k + 1])
            out.append(ml_fields(coarse_grained(model.get_state(), self.r, self.fine_mask)))
            if progress:
                progress(1)
        return np.stack(out)

    def floor_starts(self) -> list[int]:
        """Window indices of every start date of the floor."""
        given = self.fl.start_windows
        if given is None:
            return start_windows(self.gen.n_windows, self.fl.starts, self.fl.n_lead)
        last = self.gen.n_windows - self.fl.n_lead
        bad = [s for s in given if not 0 <= s <= last]
        if bad or len(set(given)) != len(given):
            raise ValueError(f"floor.start_windows {given}: need distinct windows in 0..{last} (the run has "
                             f"{self.gen.n_windows} windows, each ensemble {self.fl.n_lead} steps)")
        return sorted(given)


def _ratio(spread: np.ndarray, rmse: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rmse > 0, spread / np.where(rmse > 0, rmse, 1.0), np.nan)


#: the two coarse references of the floor: (suffix, what the coarse model is)
COARSE_RUNS = (("", "the uncorrected coarse model as the demo's 'coarse' runs (fresh, zero stresses)"),
               ("_pairs", "the coarse model as generate's re-forecasts (the pair files' forecast_* at 12 h)"))


def floor_dataset(cfg: FloorRunConfig, starts: list[int], results: Mapping[int, tuple[np.ndarray, ...]],
                  start_times: list[np.datetime64], spec: RunSpec) -> xr.Dataset:
    """The CF dataset of `floor.nc` from the per-start results (pooled in start order)."""
    fl = cfg.floor
    per_start = [np.stack([results[i][j] for i in range(len(starts))]) for j in range(3)]  # (start, lead, variable)
    spread_var, squared = per_start[0], per_start[1:]
    spread = np.sqrt(spread_var.mean(axis=0))
    lead = xr.DataArray(np.arange(fl.n_lead + 1, dtype=np.float64) * STEP_HOURS, dims="lead_time",
                        attrs={"units": "hours", "standard_name": "forecast_period", "long_name": "lead time"})
    ds = xr.Dataset(coords={"lead_time": lead, "start_time": ("start", np.array(start_times, dtype="datetime64[ns]"),
                                                              {"long_name": "start date of the ensemble"})})
    for j, v in enumerate(ML_VARIABLES):
        meta = attrs(v)
        units, name = meta["units"], meta["long_name"]
        ds[f"{v}_floor_spread"] = ("lead_time", spread[:, j], {
            "units": units, "long_name": f"spread of the truth ensemble: {name}",
            "cell_methods": "member: standard_deviation (unbiased) area: mean where sea start: mean (of variance)"})
        ds[f"{v}_floor_spread_by_start"] = (("start", "lead_time"), np.sqrt(spread_var[:, :, j]), {
            "units": units, "long_name": f"spread of the truth ensemble of each start date: {name}"})
        for (suffix, what), sq in zip(COARSE_RUNS, squared):
            rmse = np.sqrt(sq[:, :, j].mean(axis=0))
            ds[f"{v}_coarse_rmse{suffix}"] = ("lead_time", rmse, {
                "units": units, "long_name": f"RMSE of {what}: {name}",
                "cell_methods": "area: mean where sea start: mean (of squared error)"})
            ds[f"{v}_floor_ratio{suffix}"] = ("lead_time", _ratio(spread[:, j], rmse), {
                "units": "1", "long_name": f"predictability floor, truth-ensemble spread / RMSE of {what}: {name}"})
            ds[f"{v}_coarse_rmse{suffix}_by_start"] = (("start", "lead_time"), np.sqrt(sq[:, :, j]), {
                "units": units, "long_name": f"RMSE of {what} at each start date: {name}"})
    redrawn = [k for k, on in fl.redraw.model_dump().items() if on]
    ds.attrs.update({
        "Conventions": "CF-1.10", "title": "icecorr twin predictability floor", "producer": PRODUCER,
        "icecorr_version": package_version(), "members": fl.members, "starts": len(starts),
        "start_dates": ", ".join(str(np.datetime_as_string(t, unit="m")) for t in start_times),
        "start_windows": np.array(starts, dtype=np.int32), "seed": fl.seed, "split": fl.split,
        "run_seed": spec.seed, "refinement": cfg.generate.refinement, "lead_days": fl.lead_days,
        "coarse_stress_start": cfg.generate.coarse_stress_start, "redrawn": ", ".join(redrawn) or "nothing",
        "comment": "floor_ratio at 12 h is the RMSE / coarse RMSE a perfect corrector cannot beat: the truth's "
                   "own spread given the coarse-grained state and forcing (floor_ratio: against the coupled "
                   "'coarse' runs of `icecorr couple`; floor_ratio_pairs: against the pair files' coarse forecasts, "
                   "the denominator of offline 12 h scores). Stresses and the sub-block structure other than damage "
                   "are not perturbed, so it is a lower bound of the irreducible error.",
        "config": cfg.model_dump_json(),
    })
    return ds


def run_floor(cfg: FloorRunConfig, out_path: str | Path, comm=None, progress: Callable[[int], None] | None = None,
              models: tuple[type, type] | None = None) -> Path:
    """Measure the floor and write `out_path` (atomic, on rank 0); every rank returns its path. `comm`: mpi4py
    communicator (None = serial); `models`: (coarse, truth) classes (tests)."""
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    error, mine_results = None, {}
    try:
        worker = FloorRank(cfg, models)
        starts = worker.floor_starts()
        mine_results = worker.run(starts, [i for i in range(len(starts)) if i % size == rank], progress)
    except Exception as exc:  # every rank must learn about a failure, or the others wait forever
        error = f"rank {rank}: {type(exc).__name__}: {exc}"
        if comm is None:
            raise
    finish(comm, error, "floor", collective=True)
    gathered = comm.gather(mine_results, root=0) if comm is not None else [mine_results]
    failure = None
    if rank == 0:
        try:
            results = {k: v for part in gathered for k, v in part.items()}
            times = [np.datetime64(worker.forcing.time(cfg.generate.n_spinup + s), "ns") for s in starts]
            write_dataset_atomic(floor_dataset(cfg, starts, results, times, worker.spec), out_path)
        except Exception as exc:
            failure = f"rank 0 (writing): {type(exc).__name__}: {exc}"
            if comm is None:
                raise
    finish(comm, failure, "floor")
    return Path(out_path)
