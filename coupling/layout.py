"""Who does what in a coupled run: the role of every rank, its partner, and the ensemble slots and tiles it holds.

Start-up follows docs/coupling-protocol.md §1 on every rank, buffers only: `Comm_dup` of the launch communicator
(the coupling communicator: every protocol message travels on it), `Allgather` of int32 `[role, appnum]`,
`Comm_split` by role (physics ranks get the model communicator, ML ranks the server communicator). A rank states its
role through the `role` argument or the `ICECORR_ROLE` environment variable (MPMD launches:
`mpiexec -n 2 -x ICECORR_ROLE=physics … : -n 1 -x ICECORR_ROLE=ml …`); unstated roles resolve as the doc says (if
anyone stated one: physics; else the last MPMD application is ML; else the last `ml_ranks` ranks are ML). One
process alone plays both roles ("both", no MPI).

Pairing: physics ranks in launch-rank order are split into contiguous blocks over the ML ranks (`split_blocks`).
Slots (slot = window × members + member) and tiles of the physics ranks are what their hellos say; the Python
physics ranks of `icecorr couple` hold `split_blocks(n_slots, n_physics)` untiled.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .protocol import ROLE_ML, ROLE_PHYSICS, ROLE_UNSTATED

#: the default `comm` of the run drivers (couple, emulate, correct): MPI.COMM_WORLD, imported only when a run
#: starts (see icecorr.base.mpi.resolve_comm); None runs in one process without MPI
WORLD = "world"
ROLE_ENV = "ICECORR_ROLE"
ROLES = ("physics", "ml")
ROLE_CODES = {None: ROLE_UNSTATED, "physics": ROLE_PHYSICS, "ml": ROLE_ML}


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


def stated_role(rank: int, role: str | None) -> str | None:
    """This rank's stated role: the argument, else $ICECORR_ROLE, else None; ValueError for anything else."""
    mine = role or os.environ.get(ROLE_ENV) or None
    if mine is not None and mine not in ROLES:
        raise ValueError(f"rank {rank}: role {mine!r} (from argument or ${ROLE_ENV}) must be one of {ROLES}")
    return mine


def resolve_roles(gathered: np.ndarray, ml_ranks: int) -> list[str]:
    """Every rank's role from the allgathered int32 `[role, appnum]` rows (doc §1)."""
    size = len(gathered)
    given, apps = [int(g[0]) for g in gathered], [int(g[1]) for g in gathered]
    if any(g != ROLE_UNSTATED for g in given):
        # ranks without a role are physics: the ML part of an MPMD launch is the one that states it
        roles = ["ml" if g == ROLE_ML else "physics" for g in given]
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
    """Who does what: roles, the ML partner of each physics rank, the slots and tiles each physics rank holds."""

    comm: object | None              # coupling communicator (a Dup of the launch one), None in one process
    rank: int
    roles: list[str]
    n_slots: int | None = None
    local: object | None = None      # model communicator (physics) or server communicator (ML)
    launch: object | None = None     # the launch communicator (MPI_Abort goes there)
    slots_of: dict[int, range] = field(default_factory=dict)   # physics rank -> its slots
    tiles: dict[int, tuple[slice, slice]] = field(default_factory=dict)  # physics rank -> (rows, columns)
    ml_of: dict[int, int] = field(default_factory=dict)         # physics rank -> its ML partner

    @classmethod
    def build(cls, comm, n_slots: int | None = None, ml_ranks: int = 1, role: str | None = None) -> "Layout":
        """The layout over the ranks of `comm` (collective; doc §1). With `n_slots`, the slots of the Python
        physics ranks (`split_blocks` over them, untiled); without, they come later from the hellos (`learn`)."""
        if comm is None or comm.Get_size() == 1:
            lay = cls(None, 0, ["both"], n_slots)
            lay.ml_of[0] = 0
            if n_slots is not None:
                lay.slots_of[0] = range(n_slots)
            return lay
        from mpi4py import MPI

        rank = comm.Get_rank()
        mine = ROLE_CODES[stated_role(rank, role)]
        coupling = comm.Dup()
        appnum = comm.Get_attr(MPI.APPNUM) if comm == MPI.COMM_WORLD else None
        gathered = np.zeros((comm.Get_size(), 2), dtype=np.int32)
        coupling.Allgather(np.array([mine, -1 if appnum is None else int(appnum)], dtype=np.int32), gathered)
        try:
            roles = resolve_roles(gathered, ml_ranks)
        except ValueError:
            coupling.Free()
            raise
        local = coupling.Split(ROLES.index(roles[rank]), rank)
        lay = cls(coupling, rank, roles, n_slots, local, comm)
        physics = lay.physics_ranks
        for m, group in zip(lay.ml_ranks, split_blocks(len(physics), len(lay.ml_ranks))):
            for i in group:
                lay.ml_of[physics[i]] = m
        if n_slots is not None:
            for p, block in zip(physics, split_blocks(n_slots, len(physics))):
                lay.slots_of[p] = block
        return lay

    def learn(self, slots_of: dict[int, range], tiles: dict[int, tuple[slice, slice]], n_slots: int) -> None:
        """Slots and tiles of every physics rank, as their hellos said (ML side)."""
        self.slots_of, self.tiles, self.n_slots = dict(slots_of), dict(tiles), n_slots

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

    def partners(self, ml_rank: int) -> list[int]:
        """Physics ranks whose ML partner is `ml_rank` (with or without slots)."""
        return [p for p in self.physics_ranks if self.ml_of[p] == ml_rank]

    def served_by(self, ml_rank: int) -> list[int]:
        """Physics ranks (with at least one slot) whose members `ml_rank` corrects, in launch-rank order."""
        return [p for p in self.partners(ml_rank) if len(self.slots_of.get(p, ()))]

    def ml_slots(self, ml_rank: int) -> range:
        """The contiguous slots corrected by `ml_rank`."""
        ps = self.served_by(ml_rank)
        if not ps:
            return range(0, 0)
        return range(min(self.slots_of[p].start for p in ps), max(self.slots_of[p].stop for p in ps))

    @property
    def my_slots(self) -> range:
        """The slots this rank's physics models hold (empty on ML ranks)."""
        return self.slots_of.get(self.rank, range(0, 0))

    def free(self) -> None:
        """Release the coupling and local communicators."""
        for c in (self.local, self.comm):
            if c is not None:
                c.Free()
        self.comm = self.local = None
