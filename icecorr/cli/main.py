"""`icecorr` — the command line. It only parses, loads configs and calls the packages.

Verbs: demo | cyclone | generate | floor | prepare | observations | train | correct | couple | serve | emulate |
evaluate | assimilate |
checkpoint {inspect,validate} | config {dump,validate}.

Under `mpiexec`, an error on any rank prints one message naming the rank and aborts the whole job
(`MPI_Abort`), so no rank waits forever for a dead peer. Verbs that write check and lock their outputs first
(icecorr/cli/guards.py): an input is never an output, an existing output is replaced only with `--overwrite` (and
only once the run completes), and two runs never write one file or training folder at once.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Callable, Sequence

from icecorr.base.mpi import world_if_parallel
from icecorr.base.version import package_version
from icecorr.cli.finish import announce_written, finish_stdout, install_lossy_stdout, known_errors, parse_arguments
from icecorr.cli.fortran import add_parsers as add_fortran_parsers
from icecorr.cli.guards import (folder_guard, guard, require_corrector, require_one_forecast_source, train_folder,
                                user_input_files)
from icecorr.cli.limits import check_correct_memory, check_ensemble_memory

EXIT_USAGE = 2
EXIT_FAILURE = 1  # icecorr.cli.finish reports a stdout that cannot be written with it too


def _command_line() -> str:
    return "icecorr " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# --- configs composed per verb ----------------------------------------------------------------------------------

def _schemas() -> dict[str, type]:
    from icecorr.cli.runconfig import CoupleRunConfig, CorrectRunConfig, CycloneRunConfig, EvaluateRunConfig
    from training.data.config import PrepareRunConfig, TwinConfig
    from training.fit.config import TrainRunConfig

    return {"generate": TwinConfig, "prepare": PrepareRunConfig, "train": TrainRunConfig,
            "couple": CoupleRunConfig, "emulate": CoupleRunConfig, "correct": CorrectRunConfig,
            "cyclone": CycloneRunConfig, "evaluate": EvaluateRunConfig}


def _load(verb: str, path: str | None, overrides: Sequence[str]):
    from icecorr.base.config import load_config

    return load_config(_schemas()[verb], path, overrides)


def _flag_overrides(args, section: str, *flags: str) -> list[str]:
    """The command line's key=value overrides, then `section.flag=value` for each of `flags` given."""
    return list(args.overrides) + [f"{section}.{f}={getattr(args, f)}" for f in flags if getattr(args, f) is not None]


# --- verbs --------------------------------------------------------------------------------------------------------

def cmd_demo(args) -> int:
    """`icecorr demo`: the twin experiment end to end into --out."""
    from icecorr.cli.demo import run_demo

    run_demo(Path(args.out), quick=args.quick, progress=not args.no_progress, reuse=args.reuse, config_dir=args.config_dir)
    return 0


def cmd_cyclone(args) -> int:
    """`icecorr cyclone`: the moving-cyclone benchmark box (NetCDF + PNG) into --out."""
    from coupling.cyclone import run_cyclone

    cfg = _load("cyclone", args.config, args.overrides)
    with folder_guard(args.out, _command_line()) as out:
        path = run_cyclone(cfg.grid, cfg.physics, out, days=cfg.days, output_every_hours=cfg.output_every_hours,
                           window_seconds=cfg.window_seconds)
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


def cmd_generate(args) -> int:
    """`icecorr generate`: twin-experiment training pairs into --out (MPI: members over ranks)."""
    from icecorr.base.config import dump_config
    from training.data.generate import run_generate

    cfg = _load("generate", args.config, args.overrides)
    if args.dry_run:
        print(dump_config(cfg))
        return 0
    comm = world_if_parallel()
    with folder_guard(args.out, _command_line()) as out:
        paths = run_generate(cfg, out, comm=comm, progress=None if not args.no_progress else False)
    announce_written(paths, comm)
    return 0


def cmd_prepare(args) -> int:
    """`icecorr prepare`: training pairs from the user's reference NetCDF into --out."""
    from icecorr.base.config import dump_config
    from training.data.prepare import run_prepare

    cfg = _load("prepare", args.config, args.overrides)
    if args.dry_run:
        print(dump_config(cfg))
        return 0
    comm = world_if_parallel()
    with folder_guard(args.out, _command_line()) as out:
        path = run_prepare(cfg, out, comm=comm, base_dir=Path(args.config).parent)  # paths from the config's folder
    announce_written([path], comm)
    return 0


def cmd_train(args) -> int:
    """`icecorr train`: the run folder checked and locked (guards.train_folder), then training.fit."""
    from icecorr.base.config import ConfigError
    from training.fit.loop import main as train_main

    def argv(*more: str) -> list[str]:
        out = [args.config, *args.overrides, *more]  # overrides before the options (argparse)
        if args.device:
            out += ["--device", args.device]
        if args.seed is not None:
            out += ["--seed", str(args.seed)]
        if args.no_progress:
            out.append("--no-progress")
        if args.dry_run:
            out.append("--dry-run")
        return out

    try:
        cfg = None if args.dry_run else _load("train", args.config, [*args.overrides, *(
            [f"train.seed={args.seed}"] if args.seed is not None else [])])
    except ConfigError:
        cfg = None  # training's own loader reports it
    if cfg is None:
        return train_main(argv())
    data = cfg.train.data
    inputs = {"train file": data.train_file, "validation file": data.val_file, "config": args.config,
              "base checkpoint": cfg.train.base_checkpoint}
    with train_folder(cfg, inputs, args.overwrite, _command_line()) as fresh:
        return train_main(argv(*(["train.resume=false"] if fresh else [])))


def cmd_correct(args) -> int:
    """`icecorr correct`: offline correction of a pair file (positional) or of the user's own forecast files
    (`correct.inputs` in --config, paths from the config's folder) into a guarded, locked -o."""
    from coupling.correct import run_correct
    from coupling.correct_user import run_correct_user
    from icecorr.base.config import dump_config

    cfg = _load("correct", args.config, _flag_overrides(args, "correct", "checkpoint", "members", "seed"))
    if args.dry_run:
        print(dump_config(cfg))
        return 0
    user = require_one_forecast_source(args.forecasts, cfg.correct.inputs, args.config)
    require_corrector(cfg.correct.checkpoint, args.no_correction, args.config)
    base = Path(args.config).parent if args.config else Path.cwd()
    inputs = {"forecast file": args.forecasts, "checkpoint": cfg.correct.checkpoint, "config": args.config,
              **(user_input_files(cfg.correct.inputs, base) if user else {})}
    with guard([args.output], inputs, args.overwrite, _command_line()) as (out,):
        common = dict(comm=world_if_parallel(), command=_command_line(), config_text=dump_config(cfg))
        if user:
            path = run_correct_user(cfg.correct, out, base, **common)
        else:
            check_correct_memory(cfg.correct, args.forecasts, args.config)
            path = run_correct(cfg.correct, Path(args.forecasts), out, **common)
    announce_written([path], world_if_parallel())
    return 0


def _run_ensemble(args, emulate: bool) -> int:
    """couple / emulate: outputs guarded and locked, then the run (which checks a restart against its checkpoint)."""
    from coupling.couple import run_couple
    from coupling.emulate import run_emulate
    from coupling.ensemble_output import output_paths
    from icecorr.base.config import dump_config
    from icecorr.inputs.state_file import StateFile

    cfg = _load("emulate" if emulate else "couple", args.config,
                _flag_overrides(args, "couple", "members", "seed", "output"))
    if args.dry_run:
        print(dump_config(cfg))
        return 0
    forcing = cfg.forcing or cfg.initial
    common = dict(restart=args.restart, comm=world_if_parallel(), command=_command_line(), config_text=dump_config(cfg))
    initial_file = cfg.initial if cfg.initial_state is None else cfg.initial_state.file
    inputs = {"initial file": initial_file, "forcing file": cfg.forcing, "checkpoint": cfg.couple.checkpoint,
              "config": args.config, "restart file": args.restart}
    with guard(output_paths(cfg.couple.output, cfg.couple.start_indices), inputs, args.overwrite, _command_line(),
               partial_ok=bool(args.restart)):
        # the memory estimate reads the grid size of a file with y/x dims: the forcing's when the state file's differ
        check_ensemble_memory(cfg if cfg.initial else cfg.model_copy(update={"initial": cfg.forcing}), args.config)
        # a state file is read through its mapping onto the run's grid (its record per window: at the window start)
        initial = cfg.initial if cfg.initial_state is None else StateFile(cfg.initial_state, cfg.grid)
        if emulate:
            paths = run_emulate(cfg.couple, initial, forcing, **common)
        else:
            paths = run_couple(cfg.couple, initial, forcing, grid=cfg.grid, physics=cfg.physics, **common)
    announce_written(paths or [], common["comm"])
    return 0


def cmd_couple(args) -> int:
    """`icecorr couple`: coupled physics + corrector ensemble run."""
    return _run_ensemble(args, emulate=False)


def cmd_emulate(args) -> int:
    """`icecorr emulate`: autoregressive emulator ensemble run."""
    return _run_ensemble(args, emulate=True)


def cmd_evaluate(args) -> int:
    """`icecorr evaluate`: metrics, plots and a markdown report into the -o folder."""
    from training.evaluation.evaluate import parse_run_specs, run_evaluate

    specs = [item if "=" in item else f"{Path(item).stem}={item}" for item in args.runs]
    cfg = _load("evaluate", args.config, args.overrides)
    reference = args.reference[0] if len(args.reference) == 1 else args.reference
    with folder_guard(args.output, _command_line()) as out:
        report = run_evaluate(parse_run_specs(specs), reference, out, config=cfg.evaluate)
    print(f"wrote {report}")
    return 0


def cmd_checkpoint(args) -> int:
    """`icecorr checkpoint inspect|validate PATH`."""
    from corrector.checkpoint import load_checkpoint

    data = load_checkpoint(args.path)
    if args.action == "inspect":
        from corrector.checkpoint import describe_checkpoint

        print(describe_checkpoint(data))
    else:
        print(f"{args.path}: valid checkpoint")
    return 0


def cmd_config(args) -> int:
    """`icecorr config dump|validate VERB [CONFIG]`."""
    from icecorr.base.config import dump_config

    cfg = _load(args.schema, args.config, args.overrides)
    if args.action == "dump":
        print(dump_config(cfg), end="")
    else:
        print(f"{args.config or '<defaults>'}: valid '{args.schema}' config")
    return 0


# --- parser -------------------------------------------------------------------------------------------------------

def _common(p: argparse.ArgumentParser, config: bool = True, config_required: bool = False) -> None:
    if config:
        p.add_argument("config", nargs=None if config_required else "?", default=None, help="YAML config")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides (values parsed as YAML; also after options)")
    p.set_defaults(late_overrides=True)
    p.add_argument("--dry-run", action="store_true", help="validate the config and print it resolved, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


OVERWRITE_HELP = "replace an existing output (only once this run completes)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb (observations/assimilate/calibrate parse their own)."""
    parser = argparse.ArgumentParser(prog="icecorr", description="Hybrid physics-ML sea-ice model-error corrector.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("demo", help="twin experiment end to end: generate, train, couple, evaluate, report")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (minutes): a smoke test of the whole path")
    p.add_argument("--reuse", action="store_true", help="skip stages whose outputs already exist")
    p.add_argument("--config-dir", help="config folder (e.g. configs/region/hudson_bay) instead of configs/demo")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("cyclone", help="moving-cyclone benchmark box (Mehlmann et al. 2021): NetCDF + PNG")
    _common(p)
    p.add_argument("--out", default="runs/cyclone")
    p.set_defaults(func=cmd_cyclone)

    p = sub.add_parser("generate", help="twin-experiment training pairs (truth BBM vs coarse mEVP)")
    _common(p)
    p.add_argument("--out", default="data/twin")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("prepare", help="training pairs from your own reference NetCDF (neXtSIM, observations)")
    _common(p, config_required=True)
    p.add_argument("--out", default="data/prepared")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a corrector / emulator (torchrun for data parallel)")
    _common(p, config_required=True)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int)
    p.add_argument("--overwrite", action="store_true", help="replace a finished or different run in train.out_dir")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("correct", help="offline correction of coarse forecasts into a corrected ensemble")
    p.add_argument("forecasts", nargs="?", default=None,
                   help="NetCDF with forecast_*, initial_* and forcing (training-pair layout); omit it to correct "
                        "your own forecast files (correct.inputs in --config)")
    p.add_argument("--checkpoint", help="residual-corrector checkpoint (required unless --no-correction)")
    p.add_argument("--no-correction", action="store_true", help="no corrector: copy the forecasts (zero spread)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--config", default=None)
    p.add_argument("--members", type=int)
    p.add_argument("--seed", type=int)
    _common(p, config=False)
    p.set_defaults(func=cmd_correct)

    for verb, func, text in (("couple", cmd_couple, "coupled physics + corrector ensemble run (MPI or one process)"),
                             ("emulate", cmd_emulate, "autoregressive emulator ensemble run")):
        p = sub.add_parser(verb, help=text)
        _common(p, config_required=True)
        p.add_argument("--restart", help="restart file to continue from")
        p.add_argument("--members", type=int)
        p.add_argument("--seed", type=int)
        p.add_argument("-o", "--output")
        p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
        p.set_defaults(func=func)

    p = sub.add_parser("evaluate", help="metrics, spectra, deformation, plots and a markdown report")
    p.add_argument("runs", nargs="+", help="LABEL=run.nc[,run2.nc…] (globs allowed: one file per window), or run.nc")
    p.add_argument("--reference", required=True, nargs="+", help="reference NetCDF (or one per window)")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument("--config", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="key.sub=value override")
    p.set_defaults(func=cmd_evaluate)

    # listed for --help only; main() hands their arguments to the module (PASSTHROUGH)
    sub.add_parser("observations", help="gappy noisy synthetic observations (synth) or your observation files on "
                   "the model grid (ingest), as training pairs")
    sub.add_parser("assimilate", help="strong-constraint 4D-Var with the emulator's adjoint")
    sub.add_parser("calibrate", help="fit the spread inflation of a diffusion corrector on validation data")
    sub.add_parser("serve", help="ML ranks of an MPMD run for any model speaking the coupling protocol")

    p = sub.add_parser("checkpoint", help="inspect or validate a checkpoint")
    p.add_argument("action", choices=["inspect", "validate"])
    p.add_argument("path")
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("config", help="validate or dump the resolved config of a verb")
    p.add_argument("action", choices=["dump", "validate"])
    p.add_argument("schema", metavar="verb", choices=sorted(["generate", "prepare", "train", "couple", "emulate",
                                                             "correct", "cyclone", "evaluate"]))
    p.add_argument("config", nargs="?", default=None)
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_config, late_overrides=True)
    add_fortran_parsers(sub)
    return parser


#: verbs that parse their own arguments (argparse cannot pass `--help` etc. through a REMAINDER)
PASSTHROUGH = {"observations": ("training.data.observations", "main"), "assimilate": ("training.assimilation.runner", "main"),
               "calibrate": ("training.evaluation.calibrate", "main"), "serve": ("icecorr.cli.serve", "main"),
               "floor": ("icecorr.cli.floor", "main")}


def main(argv: Sequence[str] | None = None) -> int:
    """`icecorr VERB …`: the exit status (0 ok, 2 bad input, 1 other failure, 130 interrupted)."""
    from icecorr.base.outputs import survive_closed_stdout

    survive_closed_stdout()  # `icecorr train … | head`: the work goes on after head exits
    install_lossy_stdout()  # `… > /dev/full`: too (finish_stdout reports it)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        module, name = PASSTHROUGH[argv[0]]
        return int(getattr(__import__(module, fromlist=[name]), name)(argv[1:]) or 0)
    args = parse_arguments(build_parser(), argv)
    func: Callable = args.func
    try:
        return finish_stdout(args, int(func(args) or 0))
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one message (and an MPI abort)
        if isinstance(exc, SystemExit):
            raise
        world = world_if_parallel()
        where = f" (rank {world.Get_rank()} of {world.Get_size()})" if world is not None else ""
        known = isinstance(exc, known_errors())
        if not known:
            import traceback

            traceback.print_exc()
        print(f"icecorr {args.verb}: error{where}: {exc}", file=sys.stderr, flush=True)
        if world is not None:
            world.Abort(EXIT_FAILURE)
        return EXIT_USAGE if known else EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
