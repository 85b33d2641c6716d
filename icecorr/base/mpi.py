"""The MPI environment: how a process knows it was started by mpiexec, and the environment a launcher gives the
jobs it starts (Open MPI as root, oversubscribed 2-core machines, loopback shared-memory transport only)."""
from __future__ import annotations

import os

#: environment for `mpiexec` jobs started by the demo and the tests: run as root in containers, more ranks than
#: cores, and the self/shared-memory transports only (no network probing on sandboxed machines)
LAUNCH_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMPI_MCA_btl": "self,vader",
    "OMPI_MCA_pml": "ob1",
}

#: variables one of which every common launcher (Open MPI, MPICH/Hydra, PMIx) sets in the processes it starts
_LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")


def launched_by_mpiexec() -> bool:
    """True when this process was started by an MPI launcher (so importing mpi4py is safe and meaningful)."""
    return any(k in os.environ for k in _LAUNCHER_VARIABLES)


def world_if_parallel():
    """`MPI.COMM_WORLD` when launched under mpiexec with more than one rank, else None (no MPI needed)."""
    if not launched_by_mpiexec():
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def resolve_comm(comm):
    """`comm` itself, or `MPI.COMM_WORLD` for the string "world" (the drivers' default)."""
    if comm == "world":
        from mpi4py import MPI

        return MPI.COMM_WORLD
    return comm
