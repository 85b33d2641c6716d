"""Who does what in a coupled run: the role of every rank and the ensemble slots each one holds.

Ranks have one role each: `physics` ranks hold ensemble members (one model object per member), `ml` ranks hold the
corrector. A role comes from the `role` argument, else the `ICECORR_ROLE` environment variable (MPMD launches:
`mpiexec -n 2 -x ICECORR_ROLE=physics … : -n 1 -x ICECORR_ROLE=ml …`), else the MPMD application number (the last
application context is ML), else the last `ml_ranks` ranks are ML. One process alone plays both roles.

A slot is one ensemble member of one window: slot = window × members + member.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

#: the default `comm` of the run drivers (couple, emulate, correct): MPI.COMM_WORLD, imported only when a run
#: starts (see icecorr.base.mpi.resolve_comm); None runs in one process without MPI
WORLD = "world"
ROLE_ENV = "ICECORR_ROLE"
ROLES = ("physics", "ml")


def split_blocks(n: int, parts: int) -> list[range]:
    """`n` items (ensemble slots, ranks) in `parts` contiguous, nearly equal blocks, the first ones one larger:
    split_blocks(5, 2) == [range(0, 3), range(3, 5)]. How slots are spread over physics ranks, physics ranks over
    ML ranks, and slots over the ranks of `icecorr emulate`."""
    base, extra = divmod(n, parts)
    out, lo = [], 0
    for p in range(parts):
        hi = lo + base + (p < extra)
        out.append(range(lo, hi))
        lo = hi
    return out


def resolve_roles(comm, ml_ranks: int = 1, role: str | None = None) -> list[str]:
    """The role of every rank of `comm` (collective). See the module docstring for the precedence."""
    if comm is None or comm.Get_size() == 1:
        return ["both"]
    from mpi4py import MPI

    mine = role or os.environ.get(ROLE_ENV) or None
    if mine is not None and mine not in ROLES:
        raise ValueError(f"rank {comm.Get_rank()}: role {mine!r} (from argument or ${ROLE_ENV}) must be one of {ROLES}")
    appnum = comm.Get_attr(MPI.APPNUM) if comm == MPI.COMM_WORLD else None
    gathered = comm.allgather((mine, -1 if appnum is None else int(appnum)))
    size = len(gathered)
    given = [g[0] for g in gathered]
    apps = [g[1] for g in gathered]
    if any(given):
        # ranks without a role are physics: the ML part of an MPMD launch is usually the one that sets it
        roles = [g or "physics" for g in given]
    elif max(apps) > 0:
        roles = ["ml" if a == max(apps) else "physics" for a in apps]
    else:
        if ml_ranks >= size:
            raise ValueError(f"{size} ranks leave no physics rank with ml_ranks={ml_ranks}")
        roles = ["physics"] * (size - ml_ranks) + ["ml"] * ml_ranks
    if "physics" not in roles or "ml" not in roles:
        raise ValueError(f"roles {roles}: a coupled run needs at least one physics and one ml rank")
    return roles


@dataclass
class Layout:
    """Who does what: roles, the ensemble slots (window × member) of each physics rank, the ML rank serving it."""

    comm: object | None              # run communicator (a Dup of the caller's), None in one process
    rank: int
    roles: list[str]
    n_slots: int
    slots_of: dict[int, range] = field(default_factory=dict)   # physics rank -> its slots
    ml_of: dict[int, int] = field(default_factory=dict)         # physics rank -> serving ML rank

    @classmethod
    def build(cls, comm, n_slots: int, ml_ranks: int = 1, role: str | None = None) -> "Layout":
        """The layout of `n_slots` slots over the ranks of `comm` (collective): roles from `resolve_roles`, slots
        split evenly over the physics ranks, physics ranks evenly over the ML ranks. Runs on a Dup of `comm`."""
        roles = resolve_roles(comm, ml_ranks, role)
        run_comm = comm.Dup() if comm is not None and comm.Get_size() > 1 else None
        rank = comm.Get_rank() if run_comm is not None else 0
        lay = cls(run_comm, rank, roles, n_slots)
        physics = lay.physics_ranks
        for p, block in zip(physics, split_blocks(n_slots, len(physics))):
            lay.slots_of[p] = block
        for m, group in zip(lay.ml_ranks, split_blocks(len(physics), len(lay.ml_ranks))):
            for i in group:
                lay.ml_of[physics[i]] = m
        return lay

    @property
    def size(self) -> int:
        """Number of ranks in the run."""
        return len(self.roles)

    @property
    def role(self) -> str:
        """This rank's role: 'physics', 'ml' or 'both' (one process)."""
        return self.roles[self.rank]

    @property
    def physics_ranks(self) -> list[int]:
        """Ranks that hold ensemble members."""
        return [r for r, x in enumerate(self.roles) if x in ("physics", "both")]

    @property
    def ml_ranks(self) -> list[int]:
        """Ranks that hold the corrector."""
        return [r for r, x in enumerate(self.roles) if x in ("ml", "both")]

    @property
    def writer(self) -> int:
        """The one rank that writes output and restart files: the first ML rank."""
        return self.ml_ranks[0]

    def served_by(self, ml_rank: int) -> list[int]:
        """Physics ranks (with at least one slot) whose members `ml_rank` corrects, in slot order."""
        return [p for p in self.physics_ranks if self.ml_of[p] == ml_rank and len(self.slots_of[p])]

    def ml_slots(self, ml_rank: int) -> range:
        """The contiguous slots corrected by `ml_rank`."""
        ps = self.served_by(ml_rank)
        if not ps:
            return range(0, 0)
        return range(self.slots_of[ps[0]].start, self.slots_of[ps[-1]].stop)

    @property
    def my_slots(self) -> range:
        """The slots this rank's physics models hold (empty on ML ranks)."""
        return self.slots_of.get(self.rank, range(0, 0))

    def free(self) -> None:
        """Release the run communicator."""
        if self.comm is not None:
            self.comm.Free()
            self.comm = None
