"""Work split over MPI ranks by the data producers: contiguous blocks of windows, and one failure check that every
rank passes together (so no rank waits forever in a collective for a peer that has given up)."""
from __future__ import annotations


def contiguous_block(n: int, rank: int, size: int) -> slice:
    """The `rank`-th of `size` contiguous, nearly equal blocks of `n` items."""
    lo = n * rank // size
    return slice(lo, n * (rank + 1) // size)


def finish(comm, error: str | None, what: str, collective: bool = False) -> None:
    """Raise on every rank if any rank (collective) or rank 0 reported an error, so that no rank is left waiting
    in a collective for a peer that has given up."""
    if comm is None:
        return
    errors = comm.allgather(error) if collective else [comm.bcast(error, root=0)]
    errors = [e for e in errors if e]
    if errors:
        raise RuntimeError(f"{what} failed: " + "; ".join(errors))
