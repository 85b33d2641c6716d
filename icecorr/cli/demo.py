"""`icecorr demo`: the twin experiment end to end, on the built-in default configs or those of a config folder
(`--config-dir configs/region/hudson_bay`: its generate.yaml, couple.yaml, optional train_<name>.yaml and demo.yaml
with the sizes; a region's grid.yaml and forcing.yaml are passed to generate as absolute paths).

Stages (each one an `icecorr` command, printed and logged to `commands.log`, so any stage can be re-run by hand):
1. generate   — BBM truth (64², 8 km) vs coarse mEVP (32², 16 km) training pairs, over MPI ranks; then the
                twin's predictability floor (`icecorr floor`: truth ensembles, data/floor.nc) on the test seed;
                then the emulator's own pairs: the training winters and 4 more, the truth alone (data/emulator);
2. train      — deterministic residual corrector (the baseline, and the regression stage of the diffusion
                corrector) in parallel with the deterministic emulator (the emulator's regression stage), one core
                each; then the diffusion residual corrector on top of its frozen regression stage (CorrDiff-style)
                on both cores; then the diffusion emulator on top of its own, a fixed number of steps;
3. runs       — over held-out 15-day windows: the uncorrected coarse model, the coupled hybrid with the deterministic
                correction, the coupled MPI diffusion ensemble (2 physics ranks + 1 ML rank), the emulator ensemble;
4. evaluate   — metrics, spectra, deformation, plots and `report/report.md`;
5. summary    — the headline figures against the product goals, in `summary.md`.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from icecorr.base.mpi import LAUNCH_ENV
from icecorr.cli.demo_summary import demo_summary

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "demo"
TRAIN_CONFIGS = {name: CONFIG_DIR.parent / f"train_{file}.yaml" for name, file in
                 (("diffusion", "diffusion_residual"), ("deterministic", "deterministic"),
                  ("emulator_base", "deterministic_emulator"), ("emulator_tuned", "deterministic_emulator"),
                  ("emulator", "diffusion_emulator"))}
#: the emulator's stages, which learn on the emulator's own pairs (`Demo.emulator_data`) when there are any
EMULATOR_STAGES = ("emulator_base", "emulator_tuned", "emulator")
# the emulator's regression stage fine-tuned on its own 4-step rollouts (train.rollout_steps; docs/emulator.md):
# before any plan override, so a quick plan's step counts still apply
ROLLOUT_TUNING = ("train.rollout_steps=4", "train.max_steps=500", "train.optim.lr=3e-4", "train.optim.warmup_steps=0")


@dataclass
class DemoPlan:
    """Sizes of one demo run (`quick` shrinks everything to a smoke test of the whole path)."""

    generate_overrides: list[str] = field(default_factory=list)
    train_overrides: dict[str, list[str]] = field(default_factory=dict)
    members: int = 16
    # 12 windows of 15 days tile the 180-day test run: spread/skill and 15-day scores of a handful of start dates
    # swing with the weather of those dates (velocity spread/RMSE 0.1–2.7 over 4 windows)
    windows: int = 12
    window_days: float = 15.0
    generate_ranks: int = 2
    # the predictability floor: start dates × members of truth ensembles of window_days, at the coupled windows'
    # dates (`floor.starts` only when they cannot be used); a 64² truth step costs ~0.45 s: ~12 min on 2 quiet cores
    floor_overrides: list[str] = field(default_factory=lambda: ["floor.starts=6", "floor.members=4"])
    # the diffusion corrector learns on cross-fitted regression residuals (train.cross_fit): two more deterministic
    # trainings, each on half of the training runs (skipped when the train split has a single run); off: measured
    # no better coupled (docs/calibration.md)
    cross_fit: bool = False
    # the diffusion ensemble's coarse model runs each member with its own P* and wind drag (couple.
    # physics_perturbation): spread that persists like the model error. Around the tuned P* (configs/demo) σ 0.25
    # ties σ 0.5 in validation CRPS with a better ensemble mean and less over-dispersion, and beats one physics in
    # every CRPS; Δ_min scaled with P* keeps the viscous creep of calm ice P*/Δ_min, which takes much of the spread
    # out of the calm cells at the same CRPS, and with it σ 0.35 puts most leads in the spread/RMSE goal band
    # (validation, docs/calibration.md); {} = one physics
    physics_perturbation: dict[str, float] = field(default_factory=lambda: {"p_star+delta_min": 0.35, "c_air": 0.1})
    # the emulator never reads a coarse forecast, so it learns on the training winters and these seeds' winters of
    # the truth alone (pairs without the coarse model): with six winters (and 2000 one-step steps) its regression
    # stage's validation skill is 0.38 against 0.25 on two (docs/emulator.md, "Data or steps?"); [] = the
    # correctors' training pairs; must not be a validation or test seed
    emulator_extra_seeds: list[int] = field(default_factory=lambda: [5, 6, 7, 8])


def plan(quick: bool, config_dir: Path = CONFIG_DIR) -> DemoPlan:
    """The full demo's sizes, or with `quick` a 16² grid, 20 days of data, 30 training steps and one 3-day window.
    A config folder's `demo.yaml` gives its own sizes (DemoPlan keys; `quick:` those of the smoke test, with
    `train_overrides` a list for every corrector)."""
    if (config_dir / "demo.yaml").is_file():
        return folder_plan(config_dir / "demo.yaml", quick)
    if not quick:
        return DemoPlan()
    small = ["train.max_steps=30", "train.val_every=15", "train.checkpoint_every=15", "train.batch_size=8",
             "train.time_budget_minutes=10"]
    return DemoPlan(
        generate_overrides=["grid.nx=16", "grid.ny=16", "generate.run_days=20", "generate.spinup_days=2",
                            "generate.seeds.train=[1]", "generate.seeds.val=[2]", "generate.seeds.test=[3]"],
        train_overrides={k: small for k in TRAIN_CONFIGS},
        members=4, windows=1, window_days=3.0, floor_overrides=["floor.starts=2", "floor.members=3"],
        emulator_extra_seeds=[4])


def folder_plan(path: Path, quick: bool) -> DemoPlan:
    """DemoPlan from a config folder's demo.yaml (the `quick:` mapping replaces the keys it gives)."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    small = data.pop("quick", {}) or {}
    if quick:
        data.update(small)
    data.setdefault("emulator_extra_seeds", [])  # a region's emulator learns on its own training pairs unless told
    train = data.pop("train_overrides", [])
    data["train_overrides"] = {k: list(train) for k in TRAIN_CONFIGS} if isinstance(train, list) else train
    return DemoPlan(**data)


class Demo:
    """One demo run into `out`: its stages as `icecorr` commands, their wall times, and the summary.

    quick: the smoke-test sizes of `plan`; progress: progress bars of generate/train; reuse: skip a stage whose
    output already exists (a resumed demo).
    """

    def __init__(self, out: Path, quick: bool, progress: bool, reuse: bool, config_dir: Path | None = None):
        self.out = out
        self.quick = quick
        self.progress = progress
        self.reuse = reuse
        self.config_dir = Path(config_dir).resolve() if config_dir else CONFIG_DIR
        self.plan = plan(quick, self.config_dir)
        self.has_geography = False  # set from the test split: a region's runs get its mask and latitudes
        self.log = out / "commands.log"
        self.timings: dict[str, float] = {}
        self.env = dict(os.environ, **LAUNCH_ENV)

    # -- running commands ------------------------------------------------------------------------------------------
    def command(self, *args: str, ranks: int = 1, threads: int | None = None) -> tuple[list[str], dict]:
        """The `icecorr` command line (under mpiexec for ranks > 1) and its environment; logged."""
        cmd = [sys.executable, "-m", "icecorr.cli", *args]
        if not self.progress and args[0] in ("generate", "train", "floor"):
            cmd.append("--no-progress")
        env = dict(self.env)
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        if ranks > 1:
            mpiexec = shutil.which("mpiexec")
            if mpiexec is None:
                raise RuntimeError("mpiexec not found: run `make setup` (installs Open MPI)")
            cmd = [mpiexec, "-n", str(ranks), *cmd]
        shown = " ".join(shlex.quote(c) for c in cmd).replace(f"{sys.executable} -m icecorr.cli", "icecorr")
        print(f"\n$ {shown}", flush=True)
        with self.log.open("a") as fh:
            fh.write(shown + "\n")
        return cmd, env

    def icecorr(self, *args: str, ranks: int = 1, threads: int | None = None) -> None:
        """Run one `icecorr` command (see `command`); raise CalledProcessError if it fails."""
        cmd, env = self.command(*args, ranks=ranks, threads=threads)
        subprocess.run(cmd, check=True, env=env)

    def parallel(self, *jobs: tuple[tuple[str, ...], int]) -> None:
        """Run several single-rank `icecorr` commands at once ((args, threads) each); fail if any fails."""
        procs = [subprocess.Popen(cmd, env=env) for cmd, env in (self.command(*a, threads=t) for a, t in jobs)]
        codes = [p.wait() for p in procs]
        failed = [" ".join(a[:2]) for (a, _), c in zip(jobs, codes) if c != 0]
        if failed:
            raise RuntimeError(f"failed: {', '.join(failed)}")

    def stage(self, name: str, done: Path | None, func) -> None:
        """Run `func` as the stage `name` and record its wall time (s), unless reusing and `done` exists."""
        if self.reuse and done is not None and done.exists():
            print(f"[demo] {name}: reusing {done}")
            return
        t0 = time.perf_counter()
        print(f"\n[demo] === {name} ===", flush=True)
        func()
        self.timings[name] = time.perf_counter() - t0
        print(f"[demo] {name} took {self.timings[name] / 60:.1f} min", flush=True)

    # -- stages ----------------------------------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        """The directory of the generated pair files (train.nc, val.nc, test.nc)."""
        return self.out / "data"

    def twin_args(self) -> list[str]:
        """The twin experiment's config and overrides (of `generate` and `floor`)."""
        region = [f"{key}={self.config_dir / f'{name}.yaml'}" for key, name in (("region", "grid"), ("forcing", "forcing"))
                  if (self.config_dir / f"{name}.yaml").is_file()]
        return [str(self.config_dir / "generate.yaml"), *region, *self.plan.generate_overrides]

    def generate(self) -> None:
        """Stage 1: the training pairs of the twin experiment, over `generate_ranks` MPI ranks."""
        self.icecorr("generate", *self.twin_args(), "--out", str(self.data), ranks=self.plan.generate_ranks, threads=1)

    @property
    def emulator_data(self) -> Path:
        """The directory of the emulator's own training pairs (train.nc), when the plan has extra seeds."""
        return self.data / "emulator"

    def generate_emulator_pairs(self) -> None:
        """Stage 1c: the emulator's training pairs: the training winters and `emulator_extra_seeds` more, the truth
        alone (`generate.forecast=persistence`: no coarse model runs), over `generate_ranks` MPI ranks."""
        splits = json.loads((self.data / "manifest.json").read_text())["splits"]
        held_out = {s for split in ("val", "test") for s in splits.get(split, {}).get("seeds", [])}
        extra = self.plan.emulator_extra_seeds
        if held_out & set(extra):
            raise RuntimeError(f"emulator_extra_seeds {sorted(held_out & set(extra))} are validation or test seeds")
        seeds = splits["train"]["seeds"] + [s for s in extra if s not in splits["train"]["seeds"]]
        self.icecorr("generate", *self.twin_args(), "generate.forecast=persistence",
                     f"generate.seeds.train={json.dumps(seeds)}", "generate.seeds.val=[]", "generate.seeds.test=[]",
                     "--out", str(self.emulator_data), ranks=self.plan.generate_ranks, threads=1)

    def floor(self) -> None:
        """Stage 1b: the predictability floor beside the pair files (data/floor.nc; evaluate finds it there), at the
        coupled windows' own start dates when they all lie in the test split's first run (the floor's run)."""
        runs = self.test_runs()
        starts = self.window_starts(runs)
        same = [f"floor.start_windows={json.dumps(starts)}"] if all(runs[s] == runs[0] for s in starts) else []
        self.icecorr("floor", *self.twin_args(), f"floor.lead_days={self.plan.window_days:g}",
                     *self.plan.floor_overrides, *same, "--out", str(self.data / "floor.nc"), "--overwrite",
                     ranks=self.plan.generate_ranks, threads=1)

    def train_args(self, name: str, threads: int, *extra: str, out_name: str | None = None,
                   defaults: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The `icecorr train` arguments of the corrector `name` (a key of TRAIN_CONFIGS) on this run's data, into
        train/<out_name or name>: `defaults`, the plan's overrides, then `extra`."""
        own = self.config_dir / TRAIN_CONFIGS[name].name
        out = self.out / "train" / (out_name or name)
        pairs = self.emulator_data if name in EMULATOR_STAGES and self.plan.emulator_extra_seeds else self.data
        return ("train", str(own if own.is_file() else TRAIN_CONFIGS[name]), f"train.data.train_file={pairs / 'train.nc'}",
                f"train.data.val_file={self.data / 'val.nc'}", f"train.out_dir={out}",
                f"train.threads={threads}", *defaults, *self.plan.train_overrides.get(name, []), *extra)

    def train_first_stage(self) -> None:
        """The deterministic corrector and the emulator's regression stage, one core each (small networks use one
        core well)."""
        self.parallel((self.train_args("deterministic", 1), 1), (self.train_args("emulator_base", 1), 1))

    def tune_emulator(self, threads: int) -> None:
        """The emulator's regression stage fine-tuned on its own rollouts (ROLLOUT_TUNING): one-step training leaves
        a model whose rollouts drift from the states it was trained on."""
        init = f"train.init_checkpoint={self.checkpoint('emulator_base')}"
        self.icecorr(*self.train_args("emulator_tuned", threads, init, defaults=ROLLOUT_TUNING), threads=threads)

    def train_emulator(self, threads: int) -> None:
        """The diffusion emulator on top of its frozen regression stage (the rollout-tuned deterministic emulator,
        its last weights: best.pt is chosen by one-step skill), a fixed number of steps
        (configs/train_diffusion_emulator.yaml)."""
        base = f"train.base_checkpoint={self.out / 'train' / 'emulator_tuned' / 'last.pt'}"
        self.icecorr(*self.train_args("emulator", threads, base), threads=threads)

    def fold_runs(self) -> list[list[int]]:
        """The training runs in two folds (alternate runs), or [] when cross-fitting is off or impossible."""
        if not self.plan.cross_fit:
            return []
        with xr.open_dataset(self.data / "train.nc") as ds:
            runs = sorted({int(r) for r in ds["run"].values}) if "run" in ds else [0]
        if len(runs) < 2:
            print("[demo] one training run: the diffusion corrector learns on in-sample residuals")
            return []
        return [runs[0::2], runs[1::2]]

    def train_folds(self) -> None:
        """The cross-fitted regression stages: the deterministic corrector trained on each fold, one core each."""
        self.parallel(*((self.train_args("deterministic", 1, f"train.data.runs={json.dumps(fold)}",
                                         out_name=f"fold{k}"), 1) for k, fold in enumerate(self.fold_runs())))

    def train_diffusion(self, threads: int) -> None:
        """The diffusion corrector on top of the frozen deterministic one (its regression stage); with folds, each
        training window learns on the residual of the fold stage that never saw its run."""
        args = [f"train.base_checkpoint={self.checkpoint('deterministic')}"]
        folds = self.fold_runs()
        if folds:
            # the stage for a run of fold k is the one trained on the other fold
            stages = {r: str(self.checkpoint(f"fold{1 - k}")) for k, fold in enumerate(folds) for r in fold}
            args.append(f"train.cross_fit={json.dumps(stages)}")
        self.icecorr(*self.train_args("diffusion", threads, *args), threads=threads)

    def checkpoint(self, name: str) -> Path:
        """The best (else the last) checkpoint of the corrector `name`; FileNotFoundError if neither exists."""
        for candidate in ("best.pt", "last.pt"):
            p = self.out / "train" / name / candidate
            if p.exists():
                return p
        raise FileNotFoundError(f"no checkpoint in {self.out / 'train' / name}")

    def test_runs(self) -> list[int]:
        """The run index of every record of the test split (0 throughout for a file without `run`)."""
        with xr.open_dataset(self.data / "test.nc") as ds:
            self.has_geography = "lat" in ds
            return [int(r) for r in ds["run"].values] if "run" in ds else [0] * ds.sizes["time"]

    def window_starts(self, runs: list[int] | None = None) -> list[int]:
        """Time indices of the test split where the held-out windows start: `windows` of them, evenly spread, each
        inside one contiguous run (`runs`: `test_runs()`, read when not given)."""
        runs = self.test_runs() if runs is None else runs
        steps = round(self.plan.window_days * 2)
        starts: list[int] = []
        # evenly spread windows that stay inside one contiguous run
        candidates = [s for s in range(0, len(runs) - steps) if runs[s] == runs[s + steps - 1]]
        if not candidates:
            raise RuntimeError(f"test split too short for {self.plan.window_days}-day windows")
        k = self.plan.windows
        for i in range(k):
            starts.append(candidates[round(i * (len(candidates) - 1) / max(k - 1, 1))])
        return sorted(set(starts))

    def run(self, label: str, checkpoint: Path | None, members: int, emulate: bool = False, ranks: int = 1,
            overrides: tuple[str, ...] = ()) -> None:
        """Couple (or emulate) every held-out window with `checkpoint` (None: the uncorrected coarse model) into
        runs/{label}*.nc (`overrides`: further couple-config overrides)."""
        starts = self.window_starts()
        # the demo owns its runs folder: a rerun replaces its earlier trajectories (the CLI refuses that by default)
        args = ["emulate" if emulate else "couple", str(self.config_dir / "couple.yaml"),
                f"initial={self.data / 'test.nc'}", f"couple.members={members}",
                f"couple.days={self.plan.window_days}", f"couple.start_indices={json.dumps(starts)}",
                f"couple.output={self.out / 'runs' / (label + '.nc')}",
                f"couple.checkpoint={checkpoint if checkpoint else 'null'}"]
        args += [f"grid.nx={n}" for n in self._grid_override("nx")] + [f"grid.ny={n}" for n in self._grid_override("ny")]
        if self.has_geography:  # a region: the model's land mask and Coriolis latitudes are the pair file's
            args += [f"grid.mask={self.data / 'test.nc'}", f"grid.latitude={self.data / 'test.nc'}"]
        self.icecorr(*args, *overrides, "--overwrite", ranks=ranks, threads=1)

    def _grid_override(self, key: str) -> list[str]:
        return [o.split("=", 1)[1] for o in self.plan.generate_overrides if o.startswith(f"grid.{key}=")]

    def run_files(self, label: str) -> list[str]:
        """The output files of the runs `label`, sorted."""
        return sorted(str(p) for p in (self.out / "runs").glob(f"{label}*.nc"))

    def evaluate(self) -> None:
        """Stage 4: `icecorr evaluate` of every run that exists against the test split, into report/."""
        labels = ["coarse", "deterministic", "diffusion", "emulator"]
        runs = [f"{label}={','.join(self.run_files(label))}" for label in labels if self.run_files(label)]
        # the training winters' mean state of the same season is the climatology baseline (the honest 15-day floor)
        self.icecorr("evaluate", *runs, "--reference", str(self.data / "test.nc"), "-o", str(self.out / "report"),
                     "--set", f"evaluate.climatology=[{self.data / 'train.nc'}]")

    # -- summary ---------------------------------------------------------------------------------------------------
    def summary(self) -> str:
        """The headline figures against the product goals (markdown): `icecorr.cli.demo_summary`."""
        return demo_summary(self)

    def main(self) -> None:
        """All stages in order, then timings.json and summary.md (also printed)."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "runs").mkdir(exist_ok=True)
        t0 = time.perf_counter()
        self.stage("generate", self.data / "test.nc", self.generate)
        self.stage("predictability floor", self.data / "floor.nc", self.floor)
        if self.plan.emulator_extra_seeds:
            self.stage("generate the emulator's pairs", self.emulator_data / "train.nc", self.generate_emulator_pairs)
        self.stage("train deterministic corrector and emulator regression stage",
                   self.out / "train" / "emulator_base" / "last.pt", self.train_first_stage)
        if self.fold_runs():
            self.stage("train cross-fitted regression stages", self.out / "train" / "fold1" / "last.pt",
                       self.train_folds)
        self.stage("train diffusion corrector", self.out / "train" / "diffusion" / "last.pt",
                   lambda: self.train_diffusion(threads=os.cpu_count() or 2))
        self.stage("fine-tune the emulator's regression stage on rollouts",
                   self.out / "train" / "emulator_tuned" / "last.pt",
                   lambda: self.tune_emulator(threads=os.cpu_count() or 2))
        self.stage("train diffusion emulator", self.out / "train" / "emulator" / "last.pt",
                   lambda: self.train_emulator(threads=os.cpu_count() or 2))
        perturbation = self.plan.physics_perturbation
        self.stage("coarse runs", None, lambda: self.run("coarse", None, members=1))
        self.stage("deterministic-corrected runs", None,
                   lambda: self.run("deterministic", self.checkpoint("deterministic"), members=1))
        self.stage("diffusion-corrected MPI ensemble", None,
                   lambda: self.run("diffusion", self.checkpoint("diffusion"), members=self.plan.members, ranks=3,
                                    overrides=(f"couple.physics_perturbation={json.dumps(perturbation)}",)))
        self.stage("emulator ensemble", None,
                   lambda: self.run("emulator", self.checkpoint("emulator"), members=self.plan.members, emulate=True))
        self.stage("evaluate", None, self.evaluate)
        self.timings["total"] = time.perf_counter() - t0
        (self.out / "timings.json").write_text(json.dumps(self.timings, indent=2))
        text = self.summary()
        (self.out / "summary.md").write_text(text)
        print("\n" + text)
        print(f"[demo] done in {self.timings['total'] / 60:.1f} min; report: {self.out / 'report' / 'report.md'}, "
              f"summary: {self.out / 'summary.md'}")


def run_demo(out: Path, quick: bool = False, progress: bool = True, reuse: bool = False,
             config_dir: Path | None = None) -> Path:
    """Run the demo into `out` (see `Demo`; `config_dir`: a config folder instead of the built-in demo's); returns
    the path of its report (report/report.md)."""
    demo = Demo(out, quick, progress, reuse, config_dir)
    demo.main()
    return out / "report" / "report.md"
