"""The command line's guards against data loss (issue 21): which files each verb reads and writes, checked and locked
with `icecorr.base.outputs` before any work; the training run folder; the corrector and the one source of
forecasts `correct` needs.

A parallel run (mpiexec, torchrun) checks on every rank (the same read-only checks give the same answer) and locks
on rank 0 only (a lock held by one rank would refuse the others).
"""
from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from icecorr.base.config import first_difference, with_defaults
from icecorr.base.errors import InputError
from icecorr.base.mpi import world_if_parallel
from icecorr.base.outputs import OutputError, OutputLock, check_name, check_parent, guarded_outputs
from icecorr.cli.limits import refuse_odd_inputs

#: what a training run writes into its folder (training/fit/loop.py): another run there would mix with them
TRAIN_RUN_FILES = ("best.pt", "last.pt", "resume.pt", "metrics.csv", "config.yaml")
#: config keys a resumed training may change (how it runs, not what it computes); base_* are filled in by the loop
RESUME_FREE_KEYS = {"train": {"progress", "resume", "device", "threads", "num_workers", "time_budget_minutes"},
                    "train.data": {"allow_val_is_train"},  # added with issue 21: older run folders lack it
                    "corrector": {"base_network", "base_conditioning"}}


def leads_writing() -> bool:
    """True on the one process of a run that takes the locks: rank 0 of mpiexec / torchrun, or the only one."""
    world = world_if_parallel()
    if world is not None:
        return world.Get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def guard(outputs, inputs: Mapping[str, object], overwrite: bool, command: str, partial_ok: bool = False):
    """`guarded_outputs` for a verb's output files, locked on the leading process only; inputs that are folders,
    link loops or devices are refused first."""
    refuse_odd_inputs(inputs)
    return guarded_outputs(outputs, {k: (str(v) if v is not None else None) for k, v in inputs.items()},
                           overwrite=overwrite, partial_ok=partial_ok, lock=leads_writing(), command=command)


def require_corrector(checkpoint, no_correction: bool, config: str | None) -> None:
    """`icecorr correct` corrects: without a checkpoint it would write zero-spread uncorrected copies, so that needs
    an explicit `--no-correction` (and a checkpoint with `--no-correction` is a contradiction)."""
    if checkpoint is None and not no_correction:
        raise InputError(config, "correct.checkpoint", "no corrector checkpoint: pass --checkpoint (or "
                                                       "correct.checkpoint in the config), or --no-correction for "
                                                       "an uncorrected pass-through")
    if checkpoint is not None and no_correction:
        raise InputError(config, "correct.checkpoint", f"--no-correction contradicts the checkpoint {checkpoint}")


def require_one_forecast_source(forecasts, inputs, config: str | None) -> bool:
    """`icecorr correct` reads either a pair file (the positional argument) or the user's own forecast files
    (`correct.inputs`), never both or neither; True for the user's files."""
    if (forecasts is None) == (inputs is None):
        both = "both a pair file and correct.inputs" if forecasts else "no forecasts"
        raise InputError(config, "correct.inputs", f"{both}: give either a pair file (icecorr correct PAIRS.nc …) or "
                                                   "your own forecast files in correct.inputs of --config, not both")
    return inputs is not None


def user_input_files(inputs, base: Path) -> dict[str, str]:
    """{role: path} of the forecast and forcing files of `correct.inputs` (relative to `base`), for `guard`."""
    files = {f"forecast file {k}": f for k, f in enumerate(inputs.forecasts.files)}
    files.update({f"forcing file {k}": f for k, f in enumerate(inputs.forcing_files)})
    return {role: str(Path(f) if Path(f).is_absolute() else base / f) for role, f in files.items()}


def _resume_refusal(out: Path, cfg, held: list[str]) -> str | None:
    """Why this run may not continue the one in `out` (None: it is a resume of the same config)."""
    import yaml

    if not cfg.train.resume or "resume.pt" not in held:
        return "this run would start afresh and mix its files with them"
    try:
        stored = yaml.safe_load((out / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return "its config.yaml is missing or unreadable, so a resume cannot be checked"
    diff = first_difference(with_defaults(stored, cfg) if isinstance(stored, dict) else stored,
                            cfg.model_dump(mode="json"), RESUME_FREE_KEYS)
    return f"its config differs at {diff}" if diff else None


@contextmanager
def folder_guard(out, command: str) -> Iterator[Path]:
    """An output folder (generate, prepare, cyclone, evaluate): a usable name under a writable parent, not a file,
    locked for the run (files in it are replaced, as before)."""
    path = check_name(out, "output folder")
    check_parent(path, "output folder")
    if os.path.lexists(path) and not path.is_dir():
        raise OutputError(path, "the output folder exists and is not a folder")
    with ExitStack() as stack:
        if leads_writing():
            stack.enter_context(OutputLock(path, command))
        yield path


@contextmanager
def train_folder(cfg, inputs: Mapping[str, object], overwrite: bool, command: str) -> Iterator[bool]:
    """Check and lock `train.out_dir` for a training run; yields True when the run must start afresh (the folder's
    earlier run was removed under --overwrite: pass train.resume=false).

    Refused: a folder that is a file, one that holds an input the run would write over (its own config.yaml may be
    the config of a resume), and a folder holding another run, unless this is a
    resume of the same config (keys in RESUME_FREE_KEYS aside) or --overwrite (which removes TRAIN_RUN_FILES)."""
    refuse_odd_inputs(inputs)
    out = check_name(cfg.train.out_dir, "run folder (train.out_dir)")
    check_parent(out, "run folder (train.out_dir)")
    if os.path.lexists(out) and not out.is_dir():
        raise OutputError(out, "train.out_dir exists and is not a folder")
    for role, src in inputs.items():
        src_path = Path(src).resolve() if src is not None else None
        if src_path is None:
            continue
        written = src_path.parent == out.resolve() and src_path.name in TRAIN_RUN_FILES
        if src_path == out.resolve() or (written and (role != "config" or overwrite)):
            raise OutputError(out, f"the run would write over its {role} {src} (in train.out_dir): copy it elsewhere "
                                   f"or use another train.out_dir")
    lead = leads_writing()
    with ExitStack() as stack:
        if lead:
            stack.enter_context(OutputLock(out, command))
        held = [n for n in TRAIN_RUN_FILES if (out / n).exists()]
        why = _resume_refusal(out, cfg, held) if held else None
        if why and not overwrite:
            raise OutputError(out, f"the run folder already holds a training run ({', '.join(held)}); {why}: "
                                   f"use another train.out_dir, or pass --overwrite to replace that run")
        if held and overwrite and lead:
            for name in held:
                (out / name).unlink()
        yield bool(held and overwrite)
