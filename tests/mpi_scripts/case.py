"""The small coupled test case shared by the MPI job scripts and the tests: grid, initial state, forcing."""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

STEP_FAULTS = ("raise", "kill", "nan", "hang")


def grid(n: int = 16):
    from fortran_stub.config import GridConfig

    return GridConfig(nx=n, ny=n, dx=16_000.0)


def initial_state(n: int = 16) -> dict[str, np.ndarray]:
    """Pack ice with a concentration/thickness gradient (open water in one corner) at rest."""
    y, x = np.mgrid[0:n, 0:n] / (n - 1)
    sic = np.clip(1.1 - 0.6 * x * y - 0.2 * y, 0.0, 1.0)
    sic[sic < 0.15] = 0.0
    ice = sic > 0
    return {"sic": sic, "sit": np.where(ice, 1.0 + 1.5 * (1 - x), 0.0), "snt": np.where(ice, 0.1 + 0.1 * y, 0.0),
            "siu": np.zeros((n, n)), "siv": np.zeros((n, n))}


def forcing(n: int = 16, n_steps: int = 40, seed: int = 3):
    """Synthetic forcing of the data pipeline on the test grid, as a ForcingSource."""
    from coupling.forcing import CallableForcing
    from training.data.config import ForcingConfig
    from training.data.forcing import SyntheticForcing

    f = SyntheticForcing(ForcingConfig(), grid(n), "2000-10-01", n_steps + 2, seed)
    return CallableForcing(lambda k: f.coarse_at(k, 1), start=f.start)


class FaultyCorrector:
    """Wraps a corrector; at sampling call `at` (0-based) it raises, SIGKILLs its own process, returns NaN or hangs."""

    def __init__(self, inner, fault: str, at: int):
        if fault not in STEP_FAULTS:
            raise ValueError(f"fault must be one of {STEP_FAULTS}")
        self._inner, self.fault, self.at, self.calls = inner, fault, at, 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def sample(self, *args, **kwargs):
        out = self._inner.sample(*args, **kwargs)
        n, self.calls = self.calls, self.calls + 1
        if n == self.at:
            if self.fault == "raise":
                raise RuntimeError(f"injected failure in the corrector at sampling call {n}")
            if self.fault == "kill":
                print(f"killing ML process at t={time.time():.3f}", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            if self.fault == "hang":
                time.sleep(3600)
            out = out.copy()
            out[..., 0, 0] = np.nan
        return out


PHYSICS_FAULTS = ("raise", "kill")


def physics_fault_factory(n: int, fault: str, at: int, on_rank: int):
    """A CoarseModel factory whose models, on MPI rank `on_rank` only, raise or SIGKILL their own process at the
    `at`-th (0-based) `step` call of that rank (counted over all its slot models)."""
    from mpi4py import MPI

    from coupling.bridge import CoarseModel

    if fault not in PHYSICS_FAULTS:
        raise ValueError(f"physics fault must be one of {PHYSICS_FAULTS}")
    rank = MPI.COMM_WORLD.Get_rank()
    calls = [0]

    class FaultyModel(CoarseModel):
        def step(self, forcing_t0, forcing_t1):
            if rank == on_rank:
                if calls[0] == at:
                    verb = "raising in" if fault == "raise" else "killing"
                    print(f"{verb} physics process (rank {rank}) at t={time.time():.3f}", file=sys.stderr,
                          flush=True)
                    if fault == "raise":
                        raise RuntimeError(f"injected failure in the physics at step call {at}")
                    os.kill(os.getpid(), signal.SIGKILL)
                calls[0] += 1
            return super().step(forcing_t0, forcing_t1)

    return lambda: FaultyModel(grid(n))
