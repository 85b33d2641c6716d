"""How a command-line run ends (issue 21): overrides given after an option, the errors that are one line (no
traceback), success announced only once every rank is done, and stdout that cannot be written.

stdout of a run that writes files only carries status lines ("wrote …"): when it cannot be written (`> /dev/full`,
an I/O error) the run still finishes, the outputs are complete, and the lost lines are reported on stderr with exit 0,
so a script or batch system does not treat a complete output as a failure (and redo it). Where stdout *is* the
product (`config dump`, `checkpoint inspect`, `--dry-run`), the same problem is a failure (exit 1). A closed pipe
(`… | head`) is normal and silent (`icecorr.base.outputs.survive_closed_stdout`).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Iterable, Sequence

EXIT_USAGE = 2
EXIT_FAILURE = 1


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """`parser.parse_args(argv)`, but `key.sub=value` overrides after an option (`train cfg.yaml --seed 1
    train.max_steps=5`) join the verb's overrides, in order (argparse ends a positional list at the first option;
    `parse_intermixed_args` does not support subcommands)."""
    args, extra = parser.parse_known_args(argv)
    late = [a for a in extra if "=" in a and not a.startswith("-")]
    if late and getattr(args, "late_overrides", False):
        args.overrides = [*args.overrides, *late]
        extra = [a for a in extra if a not in late]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def known_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are bad input, reported as one line with exit 2 (no traceback)."""
    from icecorr.base.config import ConfigError

    errors: list[type[BaseException]] = [ConfigError, FileNotFoundError, PermissionError]
    for mod, name in (("icecorr.base.errors", "InputError"), ("corrector.checkpoint", "CheckpointError"),
                      ("coupling.bridge", "ModelError")):
        try:
            errors.append(getattr(__import__(mod, fromlist=[name]), name))
        except Exception:  # noqa: BLE001 - a broken optional import must not hide the real error
            pass
    return tuple(errors)


def run_mpi_verb(verb: str, run: Callable[[argparse.Namespace, object], int], args: argparse.Namespace, world,
                 also_known: tuple[type[BaseException], ...] = ()) -> int:
    """`run(args, world)` of a verb launched under mpiexec (`serve`, `floor`): any failure becomes one message
    naming the rank (a traceback too unless it is bad input: `known_errors` + `also_known`) and an MPI abort, so no
    rank waits for ever on a failed one; exit 2 for bad input, 1 otherwise."""
    try:
        return run(args, world)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one message and an MPI abort
        if isinstance(exc, SystemExit):
            raise
        known = isinstance(exc, (*known_errors(), *also_known))
        if not known:
            import traceback

            traceback.print_exc()
        where = f" (rank {world.Get_rank()} of {world.Get_size()})" if world is not None else ""
        print(f"icecorr {verb}: error{where}: {exc}", file=sys.stderr, flush=True)
        if world is not None:
            world.Abort(EXIT_USAGE if known else EXIT_FAILURE)
        return EXIT_USAGE if known else EXIT_FAILURE


def announce_written(paths: Iterable[object], world) -> None:
    """Print "wrote PATH" on rank 0 once every rank has finished (a barrier): a rank that fails aborts the job
    before that, so success is never printed for a failed run."""
    if world is not None:
        world.Barrier()
        if world.Get_rank() != 0:
            return
    for p in paths:
        print(f"wrote {p}")


class LossyStdout:
    """sys.stdout that survives a write error (device full, I/O error): later text goes to /dev/null and the first
    error and the lost text (its last LOST_KEPT characters) are kept for the end of the run (`finish_stdout`)."""

    LOST_KEPT = 4000

    def __init__(self, stream):
        self._stream = stream
        self.error: OSError | None = None
        self.lost = ""

    def _fail(self, exc: OSError, lost: str) -> None:
        if self.error is None:
            self.error = exc
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        self.lost = (self.lost + lost)[-self.LOST_KEPT:]

    def write(self, text: str) -> int:
        """Write; after an error, drop the text."""
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._fail(exc, text)
            return len(text)

    def flush(self) -> None:
        """Flush; after an error, nothing."""
        try:
            self._stream.flush()
        except OSError as exc:
            self._fail(exc, "")

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def install_lossy_stdout() -> None:
    """Wrap sys.stdout in LossyStdout (a real file only; a test's captured stream is left alone), line-buffered so
    that a failed write is the line it lost (status lines are few)."""
    try:
        sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(sys.stdout, LossyStdout):
        try:
            sys.stdout.reconfigure(line_buffering=True)
        except (AttributeError, OSError, ValueError):
            pass
        sys.stdout = LossyStdout(sys.stdout)


def stdout_failure() -> tuple[OSError, str] | None:
    """Flush stdout; (the error that kept it from being written during the run, the text lost), if any."""
    stream = sys.stdout
    stream.flush()
    if isinstance(stream, LossyStdout) and stream.error is not None:
        return stream.error, stream.lost
    return None


def stdout_is_product(args: argparse.Namespace) -> bool:
    """True when the verb's stdout is what the user asked for (not status lines)."""
    return (args.verb == "config" or getattr(args, "dry_run", False)
            or (args.verb == "checkpoint" and args.action == "inspect"))


def finish_stdout(args: argparse.Namespace, code: int) -> int:
    """The exit status once stdout is flushed: a stdout that could not be written fails a run whose product it is
    (exit 1), and is reported on stderr otherwise (the status unchanged)."""
    failure = stdout_failure()
    if failure is None:
        return code
    error, lost = failure
    if stdout_is_product(args):
        print(f"icecorr {args.verb}: error: could not write the output to stdout: {error}", file=sys.stderr)
        return EXIT_FAILURE
    done = "the run completed" if code == 0 else f"the run ended with exit status {code}"
    print(f"icecorr {args.verb}: warning: could not write to stdout ({error}); {done}; its lost lines follow here",
          file=sys.stderr)
    sys.stderr.write(lost if lost.endswith("\n") or not lost else lost + "\n")
    return code
