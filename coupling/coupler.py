"""The coupled cycle of `icecorr couple`: physics step → exchange → batched correction → exchange → set_state, per
12 h step, for any rank layout (coupling.layout) or one process.

The engine moves preallocated float64 slot arrays (slots, n_vars, ny, nx) between ranks with the non-blocking,
deadline-bound transport of coupling.transport; everything about files, the corrector and the forcing comes in as
callables. Start-up (roles, handshake) is in coupling.layout and coupling.handshake; `coupling.couple.run_couple`
puts the pieces together.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .layout import Layout
from .member_fields import check_members_finite, hidden_state, read_fields, set_corrected
from .transport import TAG_CORRECTED, TAG_FIELDS, TAG_OUTPUT, TAG_STATE, wait_all


@dataclass
class Timings:
    """Wall-clock seconds per cycle, by phase (rank-local)."""

    physics: list[float] = field(default_factory=list)     # model steps of this rank's members
    ml: list[float] = field(default_factory=list)          # sample + apply of this rank's slots
    cycle: list[float] = field(default_factory=list)       # whole cycle as seen by this rank
    write: list[float] = field(default_factory=list)       # output/restart writing (writer rank)


class CoupledRun:
    """The coupled cycle: physics step → exchange → batched correction → exchange → set_state, per 12 h step.

    Everything specific to files, the corrector and the forcing comes in as callables, so the same engine serves
    one process and any rank layout:
      forcing_pair(slot, step) -> (forcing_t0, forcing_t1)       physics side
      correct(step, slots, initial, forecast) -> corrected       ML side; arrays (B, n_vars, ny, nx)
      perturb(slots, initial) -> perturbed initial | None        ML side, once before the first step
      on_record(step, initial, forecast, corrected)              writer; arrays over all slots
      on_restart(step, states, extras)                           writer; states (n_slots, n_state, ny, nx),
                                                                 extras (n_slots, n_extras): see hidden_state
    """

    def __init__(self, layout: Layout, world, variables: Sequence[str], state_names: Sequence[str],
                 grid_shape: tuple[int, int], members: int, models: Sequence, forcing_pair, correct, perturb,
                 on_record, on_restart, restart_interval: int, step_timeout: float, n_extras: int = 0,
                 verb: str = "couple"):
        self.lay, self.world, self.verb = layout, world, verb
        self.variables, self.state_names = list(variables), list(state_names)
        self.ny, self.nx = grid_shape
        self.members = members
        self.models = list(models)
        self.forcing_pair, self.correct, self.perturb = forcing_pair, correct, perturb
        self.on_record, self.on_restart = on_record, on_restart
        self.restart_interval, self.timeout = restart_interval, step_timeout
        self.timings = Timings()
        nv = len(self.variables)
        role = layout.role
        if role in ("physics", "both"):
            n = len(layout.my_slots)
            if len(self.models) != n:
                raise ValueError(f"rank {layout.rank}: {len(self.models)} models for {n} slots")
            self.p_fields = np.zeros((n, 2, nv, self.ny, self.nx))   # (initial, forecast) per member
            self.p_corrected = np.zeros((n, nv, self.ny, self.nx))
            self.p_state = np.zeros((n, len(self.state_names), self.ny, self.nx))
            self.p_extras = np.zeros((n, n_extras))
        if role in ("ml", "both"):
            slots = layout.ml_slots(layout.rank) if role == "ml" else range(layout.n_slots)
            self.ml_slots = slots
            if role == "both":   # one process: the ML side works on the physics buffers directly
                self.m_fields, self.m_corrected = self.p_fields, self.p_corrected
            else:
                self.m_fields = np.zeros((len(slots), 2, nv, self.ny, self.nx))
                self.m_corrected = np.zeros((len(slots), nv, self.ny, self.nx))
            if layout.rank == layout.writer:
                n_all = layout.n_slots
                self.w_fields = self.m_fields if role == "both" else np.zeros((n_all, 2, nv, self.ny, self.nx))
                self.w_corrected = self.m_corrected if role == "both" else np.zeros((n_all, nv, self.ny, self.nx))
                self.w_state = (self.p_state if role == "both"
                                else np.zeros((n_all, len(self.state_names), self.ny, self.nx)))
                self.w_extras = self.p_extras if role == "both" else np.zeros((n_all, n_extras))

    # -------------------------------------------------------------------------------------- physics side
    def _physics_step(self, step: int) -> None:
        t0 = time.perf_counter()
        for i, (slot, model) in enumerate(zip(self.lay.my_slots, self.models)):
            read_fields(model, self.variables, self.p_fields[i, 0])
            f0, f1 = self.forcing_pair(slot, step)
            model.step(f0, f1)
            read_fields(model, self.variables, self.p_fields[i, 1])
        check_members_finite(f"physics forecast at step {step}", self.p_fields[:, 1], self.variables, self.lay.my_slots,
                     self.members)
        self.timings.physics.append(time.perf_counter() - t0)

    def _physics_apply(self) -> None:
        for i, model in enumerate(self.models):
            set_corrected(model, self.variables, self.p_corrected[i], self.p_fields[i, 1])

    def _physics_exchange(self) -> None:
        lay = self.lay
        if not len(lay.my_slots):
            return
        ml = lay.ml_of[lay.rank]
        reqs = [lay.comm.Isend(self.p_fields, dest=ml, tag=TAG_FIELDS),
                lay.comm.Irecv(self.p_corrected, source=ml, tag=TAG_CORRECTED)]
        wait_all(reqs, self.timeout, f"corrected fields from ML rank {ml}", lay.rank)

    def _pack_states(self) -> None:
        for i, model in enumerate(self.models):
            read_fields(model, self.state_names, self.p_state[i])
            self.p_extras[i] = hidden_state(model)

    # ------------------------------------------------------------------------------------------- ML side
    def _ml_gather(self) -> None:
        lay, base = self.lay, self.ml_slots.start
        reqs = []
        for p in lay.served_by(lay.rank):
            s = lay.slots_of[p]
            reqs.append(lay.comm.Irecv(self.m_fields[s.start - base:s.stop - base], source=p, tag=TAG_FIELDS))
        wait_all(reqs, self.timeout, f"forecasts from physics ranks {lay.served_by(lay.rank)}", lay.rank)

    def _ml_return(self) -> None:
        lay, base = self.lay, self.ml_slots.start
        reqs = []
        for p in lay.served_by(lay.rank):
            s = lay.slots_of[p]
            reqs.append(lay.comm.Isend(self.m_corrected[s.start - base:s.stop - base], dest=p, tag=TAG_CORRECTED))
        wait_all(reqs, self.timeout, f"delivery of corrections to physics ranks {lay.served_by(lay.rank)}",
                 lay.rank)

    def _ml_correct(self, step: int | None) -> None:
        t0 = time.perf_counter()
        initial, forecast = self.m_fields[:, 0], self.m_fields[:, 1]
        if step is None:   # before the first step: optional initial perturbation
            out = self.perturb(self.ml_slots, initial) if self.perturb is not None else initial
        else:
            out = self.correct(step, self.ml_slots, initial, forecast)
        out = np.asarray(out, dtype=np.float64).reshape(self.m_corrected.shape)
        check_members_finite(f"corrected state at step {step}", out, self.variables, self.ml_slots, self.members)
        self.m_corrected[...] = out
        self.timings.ml.append(time.perf_counter() - t0)

    def _emit(self, step: int) -> None:
        """Bring every slot's fields to the writer and hand them to `on_record`."""
        lay = self.lay
        if lay.role == "ml" and lay.rank != lay.writer:
            if len(self.ml_slots):
                reqs = [lay.comm.Isend(self.m_fields, dest=lay.writer, tag=TAG_OUTPUT),
                        lay.comm.Isend(self.m_corrected, dest=lay.writer, tag=TAG_OUTPUT)]
                wait_all(reqs, self.timeout, f"output delivery to writer rank {lay.writer}", lay.rank)
            return
        if lay.role == "ml":
            own = self.ml_slots
            self.w_fields[own.start:own.stop] = self.m_fields
            self.w_corrected[own.start:own.stop] = self.m_corrected
            for m in lay.ml_ranks:
                s = lay.ml_slots(m)
                if m == lay.rank or not len(s):
                    continue
                # same source and tag: MPI keeps the order, fields first then corrections
                reqs = [lay.comm.Irecv(self.w_fields[s.start:s.stop], source=m, tag=TAG_OUTPUT)]
                wait_all(reqs, self.timeout, f"output fields from ML rank {m}", lay.rank)
                reqs = [lay.comm.Irecv(self.w_corrected[s.start:s.stop], source=m, tag=TAG_OUTPUT)]
                wait_all(reqs, self.timeout, f"output corrections from ML rank {m}", lay.rank)
        t0 = time.perf_counter()
        self.on_record(step, self.w_fields[:, 0], self.w_fields[:, 1], self.w_corrected)
        self.timings.write.append(time.perf_counter() - t0)

    def _restart(self, step: int) -> None:
        """Bring the full model states of all members to the writer and hand them to `on_restart`."""
        lay = self.lay
        if lay.role in ("physics", "both"):
            self._pack_states()
        if lay.role == "both":
            self.on_restart(step, self.w_state, self.w_extras)
            return
        if lay.role == "physics":
            if len(lay.my_slots):
                reqs = [lay.comm.Isend(self.p_state, dest=lay.writer, tag=TAG_STATE),
                        lay.comm.Isend(self.p_extras, dest=lay.writer, tag=TAG_STATE + 10)]
                wait_all(reqs, self.timeout, f"restart state delivery to writer rank {lay.writer}", lay.rank)
        elif lay.rank == lay.writer:
            reqs = []
            for p in lay.physics_ranks:
                s = lay.slots_of[p]
                if len(s):
                    reqs.append(lay.comm.Irecv(self.w_state[s.start:s.stop], source=p, tag=TAG_STATE))
                    reqs.append(lay.comm.Irecv(self.w_extras[s.start:s.stop], source=p, tag=TAG_STATE + 10))
            wait_all(reqs, self.timeout, "restart states from the physics ranks", lay.rank)
            t0 = time.perf_counter()
            self.on_restart(step, self.w_state, self.w_extras)
            self.timings.write.append(time.perf_counter() - t0)

    # ------------------------------------------------------------------------------------------------ cycle
    def run(self, first_step: int, n_steps: int, initial_exchange: bool) -> Timings:
        """Steps `first_step … n_steps-1`; with `initial_exchange` the (perturbed) initial state is record 0."""
        role = self.lay.role
        if initial_exchange:
            if role in ("physics", "both"):
                for i, model in enumerate(self.models):
                    read_fields(model, self.variables, self.p_fields[i, 0])
                self.p_fields[:, 1] = self.p_fields[:, 0]
            self._cycle(None)
        for step in range(first_step, n_steps):
            t0 = time.perf_counter()
            self._cycle(step)
            done = step + 1
            if self.restart_interval and done % self.restart_interval == 0:
                self._restart(done)
            self.timings.cycle.append(time.perf_counter() - t0)
        return self.timings

    def _cycle(self, step: int | None) -> None:
        role = self.lay.role
        if role == "both":
            if step is not None:
                self._physics_step(step)
            self._ml_correct(step)
            if step is not None or self.perturb is not None:
                self._physics_apply()
            self._emit(0 if step is None else step + 1)
        elif role == "physics":
            if step is not None:
                self._physics_step(step)
            self._physics_exchange()
            if step is not None or self.perturb is not None:
                self._physics_apply()
        else:
            if len(self.ml_slots):
                self._ml_gather()
                self._ml_correct(step)
                self._ml_return()
            self._emit(0 if step is None else step + 1)
