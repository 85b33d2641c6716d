"""Output guard: what every verb that writes checks before it writes, so that no run destroys data.

`check_output` refuses an output path that is empty, too long, under a parent that is a file or not writable, that
exists and is not a regular file (folder, device, symbolic-link loop), that is one of the run's inputs (same file
by `os.path.samefile` or the same resolved path), or that exists without `overwrite`. `OutputLock` is an exclusive,
non-blocking `fcntl.flock` on `<name>.lock` beside an output (file or run folder): a second concurrent run fails
at once, naming the holder. `survive_closed_stdout` keeps a run alive when its stdout pipe closes (`… | head`).
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from icecorr.base.errors import InputError
from icecorr.base.files import file_kind

#: the longest suffix a writer adds to an output name (`.partial.tmp-<pid>`, `.lock`): the name must leave room
SUFFIX_ROOM = len(".partial.tmp-") + 10


class OutputError(InputError):
    """An output path that cannot be written without losing data (or at all)."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        super().__init__(str(path) if path is not None else None, None, problem)


def partial_path(path: str | os.PathLike) -> Path:
    """`<name>.partial` beside `path`: where a trajectory is written until its run completes (then renamed)."""
    path = Path(path)
    return path.with_name(f"{path.name}.partial")


def lock_path(path: str | os.PathLike) -> Path:
    """`<name>.lock` beside `path` (an output file or a run folder)."""
    path = Path(path)
    return path.with_name(f"{path.name}.lock")


def _existing_kind(path: Path) -> str | None:
    """None if nothing is at `path` or it is (a link to) a regular file, else what it is."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a dangling symbolic link" if os.path.islink(path) else None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if exc.errno == errno.ENOTDIR:
            return None  # a parent is a file: check_parent says so
        return f"unreadable ({os.strerror(exc.errno or 0)})"
    return file_kind(st.st_mode)


def check_replaceable(path: str | os.PathLike, what: str = "output") -> None:
    """Nothing at `path`, or a regular file: an OutputError for a folder, device, pipe or symbolic-link loop."""
    kind = _existing_kind(Path(path))
    if kind is not None:
        raise OutputError(path, f"the {what} exists and is {kind}; an output must be a regular file")


def check_parent(path: Path, what: str = "output") -> None:
    """The nearest existing ancestor of `path` is a writable folder (missing folders below it can be created)."""
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(path, f"cannot write the {what}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        readonly = os.statvfs(parent).f_flag & os.ST_RDONLY
        why = "is on a read-only file system" if readonly else "is not writable (permissions)"
        raise OutputError(path, f"cannot write the {what}: folder {parent} {why}")


def check_name(raw: str | os.PathLike | None, what: str = "output") -> Path:
    """The path of `raw`, or an OutputError for an empty path or a name too long for the file system."""
    text = os.fspath(raw) if raw is not None else ""
    if not str(text).strip():
        raise OutputError("''", f"the {what} path is empty")
    path = Path(text)
    parent = path.parent
    while not os.path.isdir(parent) and parent != parent.parent:  # os.path: False, not an error, for a long name
        parent = parent.parent
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in path.parts[:-1]:
        if len(os.fsencode(part)) > name_max:
            raise OutputError(path, f"folder name {part[:40]}… is {len(os.fsencode(part))} bytes, longer than "
                                    f"the file system's {name_max}")
    n = len(os.fsencode(path.name))
    if n + SUFFIX_ROOM > name_max:
        raise OutputError(path, f"the {what} name is {n} bytes; at most {name_max - SUFFIX_ROOM} fit (the file "
                                f"system allows {name_max} and temporary names add up to {SUFFIX_ROOM})")
    return path


def _same(a: Path, b: Path) -> bool:
    """Same file (hard links, symbolic links, `..`) or, if either does not exist, the same resolved path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)  # no error for a symbolic-link loop


def check_output(raw: str | os.PathLike | None, inputs: Mapping[str, str | os.PathLike | None] | None = None, *,
                 overwrite: bool = False, what: str = "output", partial_ok: bool = False) -> Path:
    """The output path `raw`, checked so that writing it loses nothing; an OutputError naming it otherwise.

    inputs: {role: path} of the run's inputs (None entries ignored). An existing output is refused unless
    `overwrite`; so is the `<name>.partial` of an interrupted run unless `partial_ok` (a restart) or `overwrite`.
    """
    path = check_name(raw, what)
    for role, src in (inputs or {}).items():
        if src is not None and str(src) != "" and _same(path, Path(src)):
            raise OutputError(path, f"the {what} is the run's {role} ({src}): writing it would destroy the input")
    check_parent(path, what)
    check_replaceable(path, what)
    if path.exists() and not overwrite:
        raise OutputError(path, f"the {what} exists; pass --overwrite to replace it (replaced only when the run "
                                f"completes)")
    part = partial_path(path)
    if os.path.lexists(part) and not (overwrite or partial_ok):
        raise OutputError(part, "an interrupted run left this partial output; continue it with --restart, or pass "
                                "--overwrite to start afresh")
    return path


def check_outputs(raws: Iterable[str | os.PathLike], inputs: Mapping[str, str | os.PathLike | None] | None = None,
                  **kwargs) -> list[Path]:
    """`check_output` for each path (one file per window), also refusing two windows onto one file."""
    paths = [check_output(r, inputs, **kwargs) for r in raws]
    if len({os.path.realpath(p) for p in paths}) != len(paths):
        raise OutputError(paths[0], "two outputs of this run are the same file")
    return paths


class OutputLock:
    """Exclusive lock of one output (file or run folder) for the length of a run: `fcntl.flock(LOCK_EX | LOCK_NB)`
    on `<name>.lock`, which holds the holder's pid, host and command, and is removed on release.

    A second run fails at once with an OutputError naming the lock and its holder. After locking, the lock file's
    inode is compared with the path's, so a holder that removed the file meanwhile cannot leave two runs locked.
    """

    def __init__(self, path: str | os.PathLike, command: str | None = None):
        self.target = Path(path)
        self.path = lock_path(self.target)
        self.command = command if command is not None else " ".join(sys.argv)
        self._fd: int | None = None
        self._made: list[Path] = []

    def acquire(self) -> "OutputLock":
        """Take the lock (creating missing parent folders, removed again on release if left empty)."""
        missing = [p for p in self.path.parents if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            self._made.append(p)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                self._remove_made()
                raise OutputError(self.path, f"another run is writing {self.target.name} ({holder}); wait for it to "
                                             f"end or stop it") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}: "
                             f"{self.command}\n".encode())
                self._fd = fd
                return self
            os.close(fd)  # the previous holder removed the file after we opened it: lock the new one
        raise OutputError(self.path, "could not take the lock (it keeps being replaced)")

    def release(self) -> None:
        """Remove the lock file, then unlock (in that order: a waiting run re-checks the inode)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None
            self._remove_made()

    def _remove_made(self) -> None:
        for p in self._made:
            try:
                p.rmdir()
            except OSError:
                break
        self._made = []

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def guarded_outputs(raws: Iterable[str | os.PathLike], inputs: Mapping[str, str | os.PathLike | None] | None = None,
                    *, overwrite: bool = False, partial_ok: bool = False, lock: bool = True,
                    command: str | None = None) -> Iterator[list[Path]]:
    """Lock every output (if `lock`: one process of a parallel run), then `check_outputs` them, for the block.

    Locking first means a run that finished while this one started is seen (its output now exists)."""
    raws = list(raws)
    with ExitStack() as stack:
        if lock:
            for raw in raws:
                path = check_name(raw)
                check_parent(path)
                stack.enter_context(OutputLock(path, command))
        yield check_outputs(raws, inputs, overwrite=overwrite, partial_ok=partial_ok)


def _read_holder(fd: int) -> str:
    """What the holder wrote into its lock file, or 'holder unknown'."""
    try:
        text = os.pread(fd, 500, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return f"locked by {text}" if text else "holder unknown"


class _ClosedPipeSafe:
    """A text stream that, once its pipe is closed (BrokenPipeError), sends every later write to /dev/null."""

    def __init__(self, stream):
        self._stream = stream

    def _divert(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def write(self, text: str) -> int:
        """Write; after a closed pipe, drop the text (the work goes on)."""
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._divert()
            return len(text)

    def flush(self) -> None:
        """Flush; after a closed pipe, nothing."""
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._divert()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def survive_closed_stdout() -> None:
    """Wrap `sys.stdout` so that `icecorr train … | head` finishes its work after `head` exits."""
    if not isinstance(sys.stdout, _ClosedPipeSafe) and hasattr(sys.stdout, "fileno"):
        try:
            sys.stdout.fileno()
        except (OSError, ValueError):
            return  # not a real file (captured by a test harness): nothing to protect
        sys.stdout = _ClosedPipeSafe(sys.stdout)
