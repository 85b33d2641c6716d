"""The physics side of the coupled cycle of `icecorr couple`: model step → exchange → set_state, per 12 h step, over
a link to the ML side — the protocol client (coupling.client.PhysicsClient) under MPI, or `LocalLink`, which hands
the same buffers straight to the ML side's cycle (coupling.ml_cycle.MLCycle) in one process.

A link has `fields` (n_slots, 2, n_exchange, ny, nx) and `corrected` (n_slots, n_exchange, ny, nx) buffers and the
calls start() / correct(step) / send_state(step, states, extras) / end(step) / abort(text) of the client.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .member_fields import check_members_finite, hidden_state, read_fields, set_corrected
from .protocol import KIND_INITIAL, KIND_STEP


@dataclass
class Timings:
    """Wall-clock seconds per cycle, by phase (rank-local)."""

    physics: list[float] = field(default_factory=list)     # model steps of this rank's members
    ml: list[float] = field(default_factory=list)          # sample + apply of this rank's slots
    cycle: list[float] = field(default_factory=list)       # whole cycle as seen by this rank
    write: list[float] = field(default_factory=list)       # output/restart writing (writer rank)


class LocalLink:
    """The physics side's link to an ML cycle in the same process (role "both"): shared buffers, direct calls."""

    def __init__(self, ml):
        self.ml, self.variables, self.timings = ml, ml.variables, ml.timings
        self.fields, self.corrected = ml.fields, ml.corrected

    def start(self) -> np.ndarray:
        """Initial exchange: the ML side sees the initial state as both start and forecast."""
        self.fields[:, 1] = self.fields[:, 0]
        self.ml.exchange(KIND_INITIAL, -1)
        return self.corrected

    def correct(self, step: int) -> np.ndarray:
        """The correction of `step`, written into `corrected`."""
        self.ml.exchange(KIND_STEP, step)
        return self.corrected

    def send_state(self, step: int, states: np.ndarray, extras: np.ndarray) -> None:
        """The restart state after `step` straight to the writer."""
        self.ml.write_restart(step + 1, states, extras)

    def end(self, step: int) -> None:
        """Nothing to tell in one process."""

    def abort(self, text: str) -> None:
        """Nothing to tell in one process (the exception propagates)."""


class PhysicsCycle:
    """One physics rank's models through the coupled cycle.

      forcing_pair(slot, step) -> (forcing_t0, forcing_t1)
      link: LocalLink or coupling.client.PhysicsClient (after its hello)
    """

    def __init__(self, models: Sequence, slots: range, members: int, variables: Sequence[str],
                 state_names: Sequence[str], forcing_pair, link, timings: Timings | None = None):
        self.models, self.slots, self.members = list(models), slots, members
        if len(self.models) != len(slots):
            raise ValueError(f"{len(self.models)} models for {len(slots)} slots")
        self.variables, self.state_names = list(variables), list(state_names)
        self.forcing_pair, self.link = forcing_pair, link
        # one process: the ML cycle's timings (LocalLink.timings), so one record holds every phase
        self.timings = timings or getattr(link, "timings", None) or Timings()
        n = len(slots)
        self.state = np.zeros((n, len(self.state_names), *link.fields.shape[-2:]))
        self.extras = np.zeros((n, hidden_state(self.models[0]).size if n else 0))

    def _step(self, step: int) -> None:
        t0 = time.perf_counter()
        fields = self.link.fields
        for i, (slot, model) in enumerate(zip(self.slots, self.models)):
            read_fields(model, self.variables, fields[i, 0])
            f0, f1 = self.forcing_pair(slot, step)
            model.step(f0, f1)
            read_fields(model, self.variables, fields[i, 1])
        check_members_finite(f"physics forecast at step {step}", fields[:, 1], self.variables, self.slots,
                             self.members)
        self.timings.physics.append(time.perf_counter() - t0)

    def _apply(self) -> None:
        for i, model in enumerate(self.models):
            set_corrected(model, self.variables, self.link.corrected[i], self.link.fields[i, 1])

    def _send_state(self, step: int) -> None:
        for i, model in enumerate(self.models):
            read_fields(model, self.state_names, self.state[i])
            self.extras[i] = hidden_state(model)
        self.link.send_state(step, self.state, self.extras)

    def run(self, first_step: int, n_steps: int, initial_exchange: bool, perturbs: bool,
            restart_interval: int) -> Timings:
        """Steps `first_step … n_steps-1`; with `initial_exchange` the (perturbed, if `perturbs`) initial state is
        exchanged first. A failure tells the ML side (link.abort) and propagates."""
        try:
            if initial_exchange:
                for i, model in enumerate(self.models):
                    read_fields(model, self.variables, self.link.fields[i, 0])
                self.link.start()
                if perturbs:
                    self._apply()
            for step in range(first_step, n_steps):
                t0 = time.perf_counter()
                self._step(step)
                self.link.correct(step)
                self._apply()
                if restart_interval and (step + 1) % restart_interval == 0:
                    self._send_state(step)
                self.timings.cycle.append(time.perf_counter() - t0)
            self.link.end(n_steps - 1)
        except BaseException as exc:
            self.link.abort(f"{type(exc).__name__}: {exc}")
            raise
        return self.timings
