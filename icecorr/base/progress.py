"""Progress bars of the long verbs (`generate`, `prepare`, `train`, `couple`, `emulate`, `correct`, `evaluate`):
a tqdm bar when the stream (stderr) is a terminal, nothing at all otherwise (CI logs, pipes, tests).

    for step in progress(range(n), desc="emulate", unit="step"):
        ...
    bar = progress(total=n, desc="train", enabled=None if rank == 0 else False)  # None: ask the terminal
    bar.update(1); bar.close()
"""
from __future__ import annotations

import sys
from typing import IO, Iterable, Iterator


def is_terminal(stream: IO | None = None) -> bool:
    """Whether `stream` (default stderr) is an interactive terminal; False for a closed or fake stream."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class NoProgress:
    """What `progress` returns when no bar is shown: iterates the iterable, and every bar method does nothing."""

    def __init__(self, iterable: Iterable | None = None):
        self.iterable = iterable

    def __iter__(self) -> Iterator:
        return iter(self.iterable if self.iterable is not None else ())

    def __len__(self) -> int:
        return len(self.iterable)

    def update(self, n: int = 1) -> None:
        """Nothing (tqdm.update)."""

    def set_postfix(self, *args, **kwargs) -> None:
        """Nothing (tqdm.set_postfix)."""

    def set_description(self, *args, **kwargs) -> None:
        """Nothing (tqdm.set_description)."""

    def write(self, text: str) -> None:
        """Print `text` as a line (tqdm.write prints it above the bar)."""
        print(text, flush=True)

    def close(self) -> None:
        """Nothing (tqdm.close)."""

    def __enter__(self) -> "NoProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool | None = None, stream: IO | None = None, **tqdm_kwargs):
    """A tqdm bar over `iterable` (or of `total` steps, advanced by `update`) written to `stream` (default stderr),
    or a `NoProgress` doing nothing. `enabled`: None shows the bar only when `stream` is a terminal; True or False
    force it (e.g. False on every MPI rank but one)."""
    stream = sys.stderr if stream is None else stream
    if enabled is None:
        enabled = is_terminal(stream)
    if not enabled:
        return NoProgress(iterable)
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, **tqdm_kwargs)
