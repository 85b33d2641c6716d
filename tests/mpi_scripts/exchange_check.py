"""Exchange exactness: every value a physics rank sends arrives unchanged on its ML rank and back.

Models hold pseudo-random fields that depend only on (slot, step), so the receiving side can recompute what it must
have received and compare bit for bit. Prints "exchange ok <checked arrays>" from every checking rank.
    mpiexec -n 3 python -m mpi4py tests/mpi_scripts/exchange_check.py 6 3
"""
from __future__ import annotations

import sys

import numpy as np
from mpi4py import MPI

sys.path.append(__file__.rsplit("/tests/", 1)[0])

from coupling.client import PhysicsClient  # noqa: E402
from coupling.coupler import PhysicsCycle  # noqa: E402
from coupling.handshake import ServerTerms  # noqa: E402
from coupling.layout import Layout  # noqa: E402
from coupling.ml_cycle import MLCycle  # noqa: E402
from coupling.protocol import Hello, codes_of  # noqa: E402
from coupling.server import MLServer  # noqa: E402

VARS = ["sic", "sit", "snt", "siu", "siv"]
NY, NX = 16, 12


def fields(slot: int, step: int, what: int) -> np.ndarray:
    return np.random.default_rng([slot, step, what]).standard_normal((len(VARS), NY, NX))


class RandomModel:
    def __init__(self, slot):
        self.slot, self.step_index = slot, 0
        self.f = dict(zip(VARS, fields(slot, 0, 0)))
        self.received = 0

    def state_views(self):
        return self.f

    def step(self, f0, f1):
        self.step_index += 1
        self.f = dict(zip(VARS, fields(self.slot, self.step_index, 0)))

    def set_state(self, state):
        want = fields(self.slot, self.step_index, 1)
        for i, v in enumerate(VARS):
            if v in state and not np.array_equal(state[v], want[i]):
                raise AssertionError(f"slot {self.slot} step {self.step_index}: corrected {v} differs")
        self.received += 1
        self.f.update({k: np.array(v) for k, v in state.items()})


def main() -> int:
    members, steps = int(sys.argv[1]), int(sys.argv[2])
    ml_ranks = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    world = MPI.COMM_WORLD
    lay = Layout.build(world, members, ml_ranks)
    models = [RandomModel(s) for s in lay.my_slots] if lay.role == "physics" else []
    checked = {"n": 0}
    records = []

    def correct(step, slots, initial, forecast):
        for b, slot in enumerate(slots):
            # initial = the state before the step = what set_state left (the correction of the previous step)
            want_i = fields(slot, step, 1) if step > 0 else fields(slot, 0, 0)
            assert np.array_equal(initial[b], want_i), f"slot {slot} step {step}: initial differs"
            assert np.array_equal(forecast[b], fields(slot, step + 1, 0)), f"slot {slot} step {step}: forecast"
            checked["n"] += 2
        return np.stack([fields(s, step + 1, 1) for s in slots])

    def on_record(step, initial, forecast, corrected):
        assert initial.shape[0] == members
        if step > 0:
            for slot in range(members):
                assert np.array_equal(corrected[slot], fields(slot, step, 1)), f"writer: slot {slot} step {step}"
                assert np.array_equal(forecast[slot], fields(slot, step, 0)), f"writer: forecast {slot} {step}"
        records.append(step)

    if lay.role == "physics":
        client = PhysicsClient(lay, 30.0, 30.0)
        s = lay.my_slots
        client.hello(Hello(NY, NX, 1.0, codes_of(VARS, "variable"), (0,) * len(VARS), first_slot=s.start,
                           n_slots=len(s)))
        PhysicsCycle(models, s, members, client.variables, [], lambda slot, step: ({}, {}), client).run(
            0, steps, initial_exchange=True, perturbs=False, restart_interval=0)
    else:
        server = MLServer(lay, 30.0, 30.0)
        agreed = server.handshake(lambda hellos: (ServerTerms(VARS, {}, members, steps, ml_of=lay.ml_of), False, 0))
        MLCycle(lay, server, VARS, agreed.grid, members, 0, 0, correct, None, on_record, None, 0, 30.0).run(
            0, steps, initial_exchange=True)
    if lay.role == "physics":
        assert all(m.received == steps for m in models), [m.received for m in models]
        print(f"rank {lay.rank} physics slots {list(lay.my_slots)} ok", flush=True)
    else:
        print(f"rank {lay.rank} ml slots {list(lay.ml_slots(lay.rank))} checked {checked['n']} ok", flush=True)
    if lay.rank == lay.writer:
        assert records == list(range(steps + 1)), records
        print(f"exchange ok records {records}", flush=True)
    lay.free()
    return 0


if __name__ == "__main__":
    sys.exit(main())
