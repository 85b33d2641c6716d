"""The ML side of the coupled cycle: per 12 h step, the fields of this ML rank's slots (whole grid, assembled from
the physics ranks' tiles by coupling.server.MLServer, or handed over in one process by coupling.coupler.LocalLink)
→ one batched correction → back to the physics ranks → every slot's fields to the writer → output record; restart
states to the writer every `restart_interval` steps.

Everything about files, the corrector and the forcing comes in as callables:
  correct(step, slots, initial, forecast) -> corrected        arrays (B, n_vars, ny, nx)
  perturb(slots, initial) -> perturbed initial | None         once, before the first step
  on_record(step, initial, forecast, corrected)               writer; arrays over all slots
  on_restart(step, states, extras)                            writer; (n_slots, n_state, ny, nx), (n_slots, n_extras)
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .coupler import Timings
from .layout import Layout
from .member_fields import check_members_finite
from .protocol import KIND_INITIAL, KIND_STEP
from .transport import TAG_OUTPUT, wait_all


class MLCycle:
    """One ML rank (or the one process) through the coupled cycle; `server` None in one process."""

    def __init__(self, lay: Layout, server, variables: Sequence[str], grid: tuple[int, int], members: int,
                 n_state: int, n_extras: int, correct, perturb, on_record, on_restart, restart_interval: int,
                 timeout: float, timings: Timings | None = None):
        self.lay, self.server = lay, server
        self.variables, self.members = list(variables), members
        self.correct, self.perturb = correct, perturb
        self.on_record, self.on_restart = on_record, on_restart
        self.restart_interval, self.timeout = restart_interval, timeout
        self.timings = timings or Timings()
        nv, (ny, nx) = len(self.variables), grid
        if server is not None:
            self.slots, self.fields, self.corrected = server.slots, server.fields, server.corrected
        else:
            self.slots = range(lay.n_slots)
            self.fields = np.zeros((lay.n_slots, 2, nv, ny, nx))
            self.corrected = np.zeros((lay.n_slots, nv, ny, nx))
        self.is_writer = lay.rank == lay.writer
        if self.is_writer:
            n_all = lay.n_slots
            local = server is None
            self.w_fields = self.fields if local else np.zeros((n_all, 2, nv, ny, nx))
            self.w_corrected = self.corrected if local else np.zeros((n_all, nv, ny, nx))
            self.w_state = np.zeros((n_all, n_state, ny, nx))
            self.w_extras = np.zeros((n_all, n_extras))

    def _correct(self, step: int | None) -> None:
        t0 = time.perf_counter()
        initial, forecast = self.fields[:, 0], self.fields[:, 1]
        if step is None:   # before the first step: optional initial perturbation
            out = self.perturb(self.slots, initial) if self.perturb is not None else initial
        else:
            out = self.correct(step, self.slots, initial, forecast)
        out = np.asarray(out, dtype=np.float64).reshape(self.corrected.shape)
        check_members_finite(f"corrected state at step {step}", out, self.variables, self.slots, self.members)
        self.corrected[...] = out
        self.timings.ml.append(time.perf_counter() - t0)

    def exchange(self, kind: int, step: int) -> None:
        """One exchange: gather (MPI), correct, return (MPI), output record."""
        if len(self.slots):
            if self.server is not None:
                if kind == KIND_STEP and hasattr(self.correct, "prefetch"):
                    self.correct.prefetch(self.slots, step)   # while the physics ranks run their step
                self.server.gather(kind, step)
            self._correct(None if kind == KIND_INITIAL else step)
            if self.server is not None:
                self.server.scatter()
        self._emit(0 if kind == KIND_INITIAL else step + 1)

    def _emit(self, record: int) -> None:
        """Bring every slot's fields to the writer (server communicator) and hand them to `on_record`."""
        lay = self.lay
        ml = lay.ml_ranks
        if not self.is_writer:
            if len(self.slots):
                # the writer is the first ML rank: rank 0 of the server communicator
                reqs = [lay.local.Isend(self.fields, dest=0, tag=TAG_OUTPUT),
                        lay.local.Isend(self.corrected, dest=0, tag=TAG_OUTPUT)]
                wait_all(reqs, self.timeout, f"output delivery to writer rank {lay.writer}", lay.rank)
            return
        if self.server is not None:
            own = self.slots
            self.w_fields[own.start:own.stop] = self.fields
            self.w_corrected[own.start:own.stop] = self.corrected
            for i, m in enumerate(ml):
                s = lay.ml_slots(m)
                if m == lay.rank or not len(s):
                    continue
                # same source and tag: MPI keeps the order, fields first then corrections
                wait_all([lay.local.Irecv(self.w_fields[s.start:s.stop], source=i, tag=TAG_OUTPUT)], self.timeout,
                         f"output fields from ML rank {m}", lay.rank)
                wait_all([lay.local.Irecv(self.w_corrected[s.start:s.stop], source=i, tag=TAG_OUTPUT)],
                         self.timeout, f"output corrections from ML rank {m}", lay.rank)
        t0 = time.perf_counter()
        self.on_record(record, self.w_fields[:, 0], self.w_fields[:, 1], self.w_corrected)
        self.timings.write.append(time.perf_counter() - t0)

    def write_restart(self, record: int, states: np.ndarray, extras: np.ndarray) -> None:
        """Writer: hand the restart state after `record` completed steps to `on_restart`."""
        t0 = time.perf_counter()
        self.on_restart(record, states, extras if extras.size else None)   # a model without hidden state
        self.timings.write.append(time.perf_counter() - t0)

    def run(self, first_step: int, n_steps: int, initial_exchange: bool) -> Timings:
        """ML rank under MPI: steps `first_step … n_steps-1` as the physics ranks send them, restart states to the
        writer, then the physics ranks' end messages."""
        if initial_exchange:
            self.exchange(KIND_INITIAL, -1)
        for step in range(first_step, n_steps):
            t0 = time.perf_counter()
            self.exchange(KIND_STEP, step)
            if self.restart_interval and (step + 1) % self.restart_interval == 0 and self.is_writer:
                self.server.collect_states(step, self.w_state, self.w_extras)
                self.write_restart(step + 1, self.w_state, self.w_extras)
            self.timings.cycle.append(time.perf_counter() - t0)
        self.server.wait_end(n_steps - 1)
        return self.timings
