"""Point-to-point transport of coupled runs: message tags, waits with deadlines, abort-on-error.

Every wait on a peer is a `Test` loop with a deadline, so a dead or hung peer aborts the job (`MPI.COMM_WORLD.Abort`)
with a message naming the waiting rank and the silent peer, instead of hanging. Data travel as buffer-based
(upper-case) messages between preallocated arrays; nothing is pickled. The coupling protocol's own tags are in
coupling.protocol; these serve the other verbs (correct, emulate) and the ML ranks among themselves.
"""
from __future__ import annotations

import sys
import time
import traceback
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, Sequence

from .handshake import HandshakeError

# Waiting polls `Test`: without pause for SPIN s, then sleeping in between, backing off from MIN_PAUSE to MAX_PAUSE
# (s). A rendezvous transfer progresses only inside Test calls and completes within the spin (a rank that sleeps
# on a busy machine may lose its core for a whole time slice, ~4 ms), while a rank waiting for a computing peer
# sleeps and leaves the cores to it (ranks outnumber cores): at most SPIN of stolen time per wait.
SPIN = 1e-3
MIN_PAUSE = 1e-5
MAX_PAUSE = 5e-4

# message tags (one duplicated communicator per run keeps them apart from anything else)
TAG_FIELDS, TAG_OUTPUT = 3, 5


class PeerTimeout(RuntimeError):
    """A peer rank did not answer before the deadline: it died or hung."""


@lru_cache(maxsize=1)
def _fine_sleep() -> None:
    """Linux rounds short sleeps up by the timer slack (50 µs by default); 1 µs slack makes 10 µs polls possible."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK, in ns
    except (OSError, AttributeError):  # not Linux: coarser polls, same behaviour
        pass


def wait_all(requests: Sequence, timeout: float, what: str, rank: int) -> None:
    """Complete `requests` or raise PeerTimeout after `timeout` s. Sleeps between polls (back-off up to MAX_PAUSE)."""
    requests = list(requests)
    if not requests:
        return
    # imported only here: initialising MPI in a one-process run forks Open MPI's orted, which would inherit (and keep
    # locked) any NetCDF file open at that moment
    from mpi4py import MPI
    _fine_sleep()
    start = time.monotonic()
    deadline, spin_until = start + timeout, start + SPIN
    pause = MIN_PAUSE
    while not MPI.Request.Testall(requests):
        now = time.monotonic()
        if now > deadline:
            raise PeerTimeout(f"timed out after {timeout:g} s waiting for {what} (the peer rank died or hung)")
        if now > spin_until:
            time.sleep(pause)
            pause = min(2 * pause, MAX_PAUSE)


def failure_message(verb: str, rank: int, role: str, exc: BaseException) -> str:
    """The one line a failing rank prints before the job is aborted."""
    return f"icecorr {verb}: rank {rank} ({role}) failed: {type(exc).__name__}: {exc}"


@contextmanager
def abort_on_error(verb: str, rank: int, role: str, world) -> Iterator[None]:
    """Turn any exception on this rank into one message naming the rank and cause, then abort the whole job.

    A refused handshake (HandshakeError) was already told on both sides (coupling.client, coupling.server): it only
    aborts. With one process (`world` None or of size 1) the exception propagates unchanged instead.
    """
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - every failure must end the job, not hang it
        if world is None or world.Get_size() == 1:
            raise
        if isinstance(exc, HandshakeError):
            world.Abort(1)
        sys.stderr.write(traceback.format_exc())
        sys.stderr.write(failure_message(verb, rank, role, exc) + "\n")
        sys.stderr.flush()
        world.Abort(1)


def probe_receive(comm, source: int, tag: int, dtype, timeout: float, what: str):
    """Receive a message of unknown length from `source` (start-up only): Iprobe with a deadline, then a receive
    into an array of the probed length; PeerTimeout after `timeout` s."""
    import numpy as np
    from mpi4py import MPI

    _fine_sleep()
    deadline = time.monotonic() + timeout
    pause = MIN_PAUSE
    status = MPI.Status()
    while not comm.Iprobe(source=source, tag=tag, status=status):
        if time.monotonic() > deadline:
            raise PeerTimeout(f"timed out after {timeout:g} s waiting for {what} from rank {source} "
                              f"(the peer rank died or hung)")
        time.sleep(pause)
        pause = min(2 * pause, 10 * MAX_PAUSE)
    mpi_type = MPI.INT32_T if np.dtype(dtype) == np.int32 else MPI.DOUBLE
    buf = np.empty(status.Get_count(mpi_type), dtype=dtype)
    comm.Recv([buf, mpi_type], source=source, tag=tag)
    return buf
