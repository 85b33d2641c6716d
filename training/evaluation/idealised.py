"""Score emulators on analytic idealised cases they never saw (training.evaluation.idealised_cases).

    python -m training.evaluation.idealised --out DIR --emulator NAME=CHECKPOINT [--emulator …] [--cases a,b]
        [--hybrid NAME=CHECKPOINT --hybrid-physics rheology_on=false …]
        [--days 10] [--members 4] [--reuse] [--nx 32 --ny 32 --dx 16000 --refinement 2] [--sampler-steps N]

For every case, in `DIR/<case>/`:
  * `pairs.nc`: the twin experiment of `icecorr generate` (`training.data.generate.simulate_run`, no spin-up) on the
    case's analytic initial state and forcing: the BBM truth on the grid refined `--refinement` times, forced by the
    analytic forcing at its own cell centres, coarse-grained every 12 h; the coarse model's 12 h re-forecasts; the
    coarse forcing (block means) at both ends of every window. Readable by `icecorr emulate/couple/evaluate`.
  * `reference.nc` (sic, sit, snt, siu, siv; time, y, x): the coarse-grained truth every 12 h from t = 0;
    `forcing.nc`: the coarse forcing snapshots (time, y, x);
  * `coarse.nc`: the coarse mEVP model's free run from the same initial state (`icecorr couple` without corrector);
  * `emulator_<NAME>.nc`: each emulator's autoregressive run (`icecorr emulate`; `--members` members for a diffusion
    checkpoint, one for a deterministic one), forced by the same coarse forcing;
  * `hybrid_<NAME>.nc`: each `--hybrid` residual corrector coupled to the coarse model (`icecorr couple`) whose
    physics takes the `--hybrid-physics` overrides (e.g. `rheology_on=false`: a free-drift model whose missing
    rheology the corrector learnt, docs/emulator.md);
then `DIR/report.md` and `DIR/scores.json` (training.evaluation.idealised_scores). `--reuse` keeps a case's
pairs/reference/forcing and coarse files when they were made with the same grid and length.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import xarray as xr
import yaml
from pydantic import ValidationError

from fortran_stub.config import GridConfig
from icecorr.base.errors import InputError
from icecorr.base.files import write_dataset_atomic, write_text_atomic
from icecorr.base.variables import STEP_HOURS, STEP_SECONDS
from training.data.coarsegrain import coarsen_forcing
from training.data.config import TwinConfig
from training.data.forcing import forcing_dataset
from training.data.generate import TWIN_SECTIONS, RunSpec, simulate_run, twin_grids
from training.data.io import CALENDAR, TIME_UNITS, write_netcdf_atomic
from training.data.provenance import pair_file_attrs
from training.evaluation.idealised_cases import (
    START,
    WINTER,
    AnalyticForcing,
    IdealisedCase,
    get_case,
)
from training.evaluation.idealised_scores import score_case, write_report
from training.evaluation.longrun import truth_trajectory

PRODUCER = "training.evaluation.idealised"
#: seed of the truth's random cohesion field (the only random element of a case)
TRUTH_SEED = 1


def twin_config(grid: GridConfig, days: float, refinement: int) -> TwinConfig:
    """The twin experiment of a case: default physics of truth and coarse model, no spin-up, `days` of 12 h
    windows, float64 storage (the reference is scored, not trained on)."""
    return TwinConfig.model_validate({"grid": grid.model_dump(), "generate": {
        "refinement": refinement, "spinup_days": 0.0, "run_days": days, "dtype": "float64",
        "seeds": {"train": [TRUTH_SEED], "val": [], "test": []}}})


def case_fingerprint(case: IdealisedCase, cfg: TwinConfig) -> str:
    """16 hex digits of the sha256 of the case's initial state and forcing at the first and last step on the coarse
    grid: a changed definition of the case (its ice, wind or thermodynamics) changes it."""
    digest = hashlib.sha256()
    end = cfg.generate.n_windows * STEP_SECONDS
    for fields in (case.initial(cfg.grid), case.forcing(cfg.grid, 0.0), case.forcing(cfg.grid, end)):
        for name in sorted(fields):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(fields[name], dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def case_identity(case: IdealisedCase, cfg: TwinConfig) -> dict[str, object]:
    """What makes the files of a case reusable (`--reuse` compares it): the case and its fingerprint, its length,
    grid, refinement and thermodynamic forcing. Global attributes of the pair, reference and forcing files; the
    `idealised` section of the run files' `config` attribute."""
    return {"idealised_case": case.name, "idealised_fingerprint": case_fingerprint(case, cfg),
            "idealised_windows": int(cfg.generate.n_windows),
            "refinement": int(cfg.generate.refinement), "grid_nx": int(cfg.grid.nx), "grid_ny": int(cfg.grid.ny),
            "grid_dx": float(cfg.grid.dx), "winter_thermodynamics": json.dumps(WINTER)}


def reference_files(case: IdealisedCase, cfg: TwinConfig, folder: Path) -> Path:
    """Run the case's twin and write `pairs.nc`, `reference.nc` and `forcing.nc` into `folder`; returns pairs.nc."""
    folder.mkdir(parents=True, exist_ok=True)
    grids = twin_grids(cfg)
    r, n = cfg.generate.refinement, cfg.generate.n_windows
    fine_forcing = AnalyticForcing(case, grids.fine, START)
    pairs = simulate_run(cfg, RunSpec("test", TRUTH_SEED, 0, START), grids=grids, forcing=fine_forcing,
                         initial=case.initial(grids.fine))
    attrs = {**pair_file_attrs(cfg, "test", PRODUCER, TWIN_SECTIONS), **case_identity(case, cfg),
             "idealised_description": case.description, "coarse_stress_start": cfg.generate.coarse_stress_start}
    pairs.attrs.update(attrs, title=f"idealised case {case.name}: twin-experiment pairs")
    path = write_netcdf_atomic(pairs, folder / "pairs.nc", dtype=cfg.generate.dtype)

    reference = truth_trajectory(path)
    reference["mask"].attrs.update(pairs["mask"].attrs)
    reference = reference.assign_coords(x=pairs["x"], y=pairs["y"])
    reference.attrs.update(attrs, title=f"idealised case {case.name}: coarse-grained BBM truth every 12 h")
    _write_cf(reference, folder / "reference.nc")
    times = np.array([np.datetime64(fine_forcing.time(k), "ns") for k in range(n + 1)])
    snapshots = [coarsen_forcing(fine_forcing.truth_at(k), r) for k in range(n + 1)]
    _write_cf(forcing_dataset(snapshots, times, cfg.grid.dx, {
        **attrs, "title": f"idealised case {case.name}: coarse forcing (block means of the analytic truth "
                          "forcing), 12-hourly"}), folder / "forcing.nc")
    return path


def _write_cf(ds: xr.Dataset, path: Path) -> Path:
    """Write `ds` atomically with the twin's fixed CF time encoding and no fill value on coordinates (CF)."""
    encoding = {name: {"_FillValue": None} for name in ds.coords}
    encoding["time"] = {"units": TIME_UNITS, "calendar": CALENDAR, "dtype": "float64", "_FillValue": None}
    return write_dataset_atomic(ds, path, encoding=encoding)


def reusable(path: Path, case: IdealisedCase, cfg: TwinConfig, records: int | None = None) -> bool:
    """`path` exists, was made for this case, grid and length, and (a run file, `records` given) is complete."""
    if not path.exists():
        return False
    with xr.open_dataset(path) as ds:
        attrs = dict(ds.attrs)
        if records is not None:  # a run file: complete, and made for this case (its config's `idealised` section)
            if ds.attrs.get("status") != "complete" or ds.sizes.get("time") != records:
                return False
            try:
                attrs = (yaml.safe_load(str(attrs.get("config", ""))) or {}).get("idealised") or {}
            except (yaml.YAMLError, AttributeError):
                return False
    return all(str(attrs.get(k)) == str(v) for k, v in case_identity(case, cfg).items())


def _config_text(run_cfg, identity: dict) -> str:
    """The `config` attribute of a run file: its run config and the case identity (read back by `reusable`)."""
    return yaml.safe_dump({"couple": run_cfg.model_dump(mode="json"), "idealised": identity}, sort_keys=False)


def run_coupled(pairs: Path, cfg: TwinConfig, out: Path, steps: int, identity: dict, physics=None,
                checkpoint: Path | None = None, members: int = 1, sampler_steps: int | None = None) -> Path:
    """The coarse model (the twin's physics, or `physics`) from the pairs' first state for `steps` 12 h steps
    (`icecorr couple`), free (no checkpoint: the baseline) or coupled to a residual corrector (a hybrid), `members`
    members; returns its trajectory file."""
    from coupling.config import CoupleConfig
    from coupling.couple import run_couple
    from coupling.forcing import FileForcing

    run_cfg = CoupleConfig(members=members, n_steps=steps, start_indices=[0], seed=0,
                           checkpoint=None if checkpoint is None else str(checkpoint), sampler_steps=sampler_steps,
                           output=str(out), restart_interval=0)
    forcing = FileForcing(pairs)
    try:
        return run_couple(run_cfg, pairs, forcing, out, comm=None, grid=cfg.grid, physics=physics or cfg.physics,
                          command=f"{PRODUCER} ({'coarse' if checkpoint is None else 'hybrid'})",
                          config_text=_config_text(run_cfg, identity))[0]
    finally:
        forcing.ds.close()


def run_emulator(pairs: Path, corrector, checkpoint: Path, out: Path, steps: int, members: int,
                 sampler_steps: int | None, identity: dict) -> Path:
    """An emulator's autoregressive run of `steps` 12 h steps from the pairs' first state, forced by their forcing
    (`icecorr emulate`), `members` members; returns its trajectory file."""
    from coupling.config import CoupleConfig
    from coupling.emulate import run_emulate
    from coupling.forcing import FileForcing

    run_cfg = CoupleConfig(members=members, n_steps=steps, start_indices=[0], seed=0, checkpoint=str(checkpoint),
                           sampler_steps=sampler_steps, output=str(out), restart_interval=0)
    forcing = FileForcing(pairs)
    try:
        return run_emulate(run_cfg, pairs, forcing, out, comm=None, corrector=corrector,
                           command=f"{PRODUCER} (emulate)", config_text=_config_text(run_cfg, identity))[0]
    finally:
        forcing.ds.close()


def hybrid_physics(cfg: TwinConfig, overrides: list[str]):
    """The twin's coarse physics with `--hybrid-physics KEY=VALUE` overrides (YAML values); InputError naming the
    option for a malformed or unknown one."""
    values = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(None, "--hybrid-physics", f"{item!r}: expected KEY=VALUE")
        values[key.strip()] = yaml.safe_load(value)
    try:
        return type(cfg.physics).model_validate({**cfg.physics.model_dump(), **values})
    except ValidationError as exc:
        err = exc.errors()[0]
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise InputError(None, "--hybrid-physics", f"{'.'.join(map(str, err['loc']))}: {what}") from None


def load_model(spec: str, grid: GridConfig, mode: str = "emulator"):
    """(label, checkpoint path, Corrector) of `--emulator`/`--hybrid NAME=CHECKPOINT`, checked before any run: a
    checkpoint of `mode` trained on `grid` (cells and spacing) with an all-ocean mask. CheckpointError for a missing
    or unreadable file, InputError naming the checkpoint and the field otherwise."""
    from corrector.inference import Corrector
    from coupling.checks import check_mask
    from coupling.ensemble import check_mode

    option = "--emulator" if mode == "emulator" else "--hybrid"
    label, sep, path = spec.partition("=")
    if not sep or not label or not path or re.fullmatch(r"[A-Za-z0-9_.-]+", label) is None:
        raise InputError(None, option, f"{spec!r}: expected NAME=CHECKPOINT (NAME of letters, digits, _ . -)")
    corrector = Corrector.load(path)
    check_mode(corrector, mode, PRODUCER)
    g = corrector.grid or {}
    trained = (int(g.get("ny", grid.ny)), int(g.get("nx", grid.nx)), float(g.get("dx", grid.dx)))
    if trained[:2] != (grid.ny, grid.nx) or not np.isclose(trained[2], grid.dx, rtol=1e-6):
        raise InputError(path, "grid", f"the checkpoint was trained on {trained[0]}×{trained[1]} cells of "
                                       f"{trained[2] / 1e3:g} km; the idealised cases run on {grid.ny}×{grid.nx} of "
                                       f"{grid.dx / 1e3:g} km (--ny/--nx/--dx)")
    check_mask(path, grid.ocean_mask().astype(np.float64), corrector)
    return label, Path(path), corrector


def _timed(fn, *args) -> tuple[Path | None, float, str | None]:
    """fn(*args) -> path; (path, wall seconds, error or None): a run that blows up is a result, reported not raised (bad
    input, an InputError, is raised)."""
    t0 = time.perf_counter()
    try:
        return fn(*args), time.perf_counter() - t0, None
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a blow-up (FloatingPointError, ModelError, …) is a result here
        traceback.print_exc()
        return None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"


def run_case(case: IdealisedCase, cfg: TwinConfig, folder: Path, emulators, members: int, sampler_steps, reuse: bool,
             hybrids=(), physics=None) -> dict:
    """All runs of one case (reference, coarse, every emulator and hybrid) and their scores
    (idealised_scores.score_case)."""
    from coupling.output import open_trajectory

    steps = cfg.generate.n_windows
    pairs = folder / "pairs.nc"
    if reuse and all(reusable(folder / f, case, cfg) for f in ("pairs.nc", "reference.nc", "forcing.nc")):
        print(f"idealised: {case.name}: reusing {pairs}", flush=True)
    else:
        t0 = time.perf_counter()
        reference_files(case, cfg, folder)
        print(f"idealised: {case.name}: truth and pairs {time.perf_counter() - t0:.0f} s", flush=True)
    identity = case_identity(case, cfg)
    plan = {"coarse": (folder / "coarse.nc", 1, lambda out: run_coupled(pairs, cfg, out, steps, identity))}
    for label, path, corrector in emulators:
        m = 1 if corrector.kind == "deterministic" else members
        plan[f"emulator {label}"] = (folder / f"emulator_{label}.nc", m, lambda out, c=corrector, p=path, m=m:
                                     run_emulator(pairs, c, p, out, steps, m, sampler_steps, identity))
    for label, path, corrector in hybrids:
        m = 1 if corrector.kind == "deterministic" else members
        plan[f"hybrid {label}"] = (folder / f"hybrid_{label}.nc", m, lambda out, p=path, m=m:
                                   run_coupled(pairs, cfg, out, steps, identity, physics, p, m, sampler_steps))
    runs, info = {}, {}
    for name, (out, m, fn) in plan.items():
        reused = name == "coarse" and reuse and reusable(out, case, cfg, steps + 1)
        if reused:
            path, wall, error = out, None, None
            print(f"idealised: {case.name}: reusing {out}", flush=True)
        else:
            path, wall, error = _timed(fn, out)
            print(f"idealised: {case.name}: {name}: {m} member(s), {wall:.0f} s, error={error}", flush=True)
        if out.exists():  # also after a failure: the completed records are in the file
            runs[name] = open_trajectory(out).load()
        info[name] = {"members": m, "wall_seconds": wall, "reused": reused, "error": error, "file": str(out)}
    reference = xr.load_dataset(folder / "reference.nc")
    return {"description": case.description, "runs": info, **score_case(reference, runs, "coarse")}


def main(argv=None) -> int:
    """`python -m training.evaluation.idealised …` (module docstring); 0 if every run completed, 1 if one failed,
    2 on bad input (one line naming the file or option and the field)."""
    from training.evaluation.idealised_cases import CASES

    ap = argparse.ArgumentParser(prog=f"python -m {PRODUCER}", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--emulator", action="append", default=[], help="NAME=CHECKPOINT of an emulator (repeatable)")
    ap.add_argument("--hybrid", action="append", default=[],
                    help="NAME=CHECKPOINT of a residual corrector coupled to the coarse model (repeatable)")
    ap.add_argument("--hybrid-physics", action="append", default=[],
                    help="KEY=VALUE override of the coarse physics under every --hybrid (repeatable), e.g. "
                         "rheology_on=false")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated case names (default: {','.join(CASES)})")
    ap.add_argument("--days", type=float, default=10.0, help="length of every case (days; 2 steps per day)")
    ap.add_argument("--members", type=int, default=4, help="members of a diffusion emulator (deterministic: 1)")
    ap.add_argument("--sampler-steps", type=int, default=None, help="sampler steps (default: the checkpoint's)")
    ap.add_argument("--nx", type=int, default=32, help="coarse grid cells along x (the demo box: 32)")
    ap.add_argument("--ny", type=int, default=32, help="coarse grid cells along y (the demo box: 32)")
    ap.add_argument("--dx", type=float, default=16_000.0, help="coarse grid spacing (m; the demo box: 16 km)")
    ap.add_argument("--refinement", type=int, default=2, help="truth grid = coarse grid refined this many times")
    ap.add_argument("--reuse", action="store_true", help="keep the truth/pairs and coarse files of an earlier run "
                                                         "with the same case, grid and length")
    a = ap.parse_args(argv)
    try:
        if not a.days > 0.5:
            raise InputError(None, "--days", f"{a.days:g}: must be more than 0.5 (at least two 12 h steps)")
        if a.members < 1:
            raise InputError(None, "--members", f"{a.members}: must be at least 1")
        cases = [get_case(name.strip()) for name in a.cases.split(",") if name.strip()]
        grid = GridConfig(nx=a.nx, ny=a.ny, dx=a.dx)
        cfg = twin_config(grid, a.days, a.refinement)
        emulators = [load_model(spec, grid, "emulator") for spec in a.emulator]
        hybrids = [load_model(spec, grid, "residual") for spec in a.hybrid]
        physics = hybrid_physics(cfg, a.hybrid_physics)
        labels = [e[0] for e in emulators + hybrids]
        if len(set(labels)) < len(labels):
            raise InputError(None, "--emulator", f"a NAME is given twice: {labels}")
    except ValueError as exc:  # InputError, CheckpointError, an invalid grid: one line, nothing written
        print(f"{PRODUCER}: error: {exc}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        results = {case.name: run_case(case, cfg, a.out / case.name, emulators, a.members, a.sampler_steps,
                                       a.reuse, hybrids, physics) for case in cases}
    except InputError as exc:  # found only while running (e.g. by icecorr emulate's checks)
        print(f"{PRODUCER}: error: {exc}", file=sys.stderr)
        return 2
    summary = {"command": " ".join([f"python -m {PRODUCER}", *(argv if argv is not None else sys.argv[1:])]),
               "grid": grid.model_dump(mode="json"), "refinement": a.refinement, "days": a.days,
               "steps": cfg.generate.n_windows, "step_hours": STEP_HOURS, "winter_thermodynamics": WINTER,
               "emulators": {label: str(path) for label, path, _ in emulators},
               "hybrids": {label: str(path) for label, path, _ in hybrids}, "hybrid_physics": a.hybrid_physics,
               "cases": results,
               "wall_seconds": time.perf_counter() - t0}
    write_text_atomic(json.dumps(summary, indent=1, default=str), a.out / "scores.json")
    print(f"wrote {write_report(a.out / 'report.md', summary)}")
    return 0 if all(r["error"] is None for c in results.values() for r in c["runs"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
