"""Physics ranks of an MPMD run against `icecorr serve`, written only against the protocol client (coupling.client):
the model is domain-decomposed as the ML side sees it, each rank exchanging one tile of its members' fields.

    mpiexec -n 4 python -m mpi4py tests/mpi_scripts/tile_client.py run.yaml --rows 8,8 --cols 8,8 \
        : -n 1 python -m icecorr.cli serve run.yaml -o out.nc

Physics ranks form `--groups` member groups (split_blocks of the members); the ranks of a group hold the tiles
`--rows` × `--cols` (row and column widths, rank order row-major). Every rank runs its group's full models
(replicated), sends its tile, and assembles the full corrected fields from the group's tiles over the model
communicator (Allgatherv) — the ML side cannot tell it from a real domain decomposition.
Faults: `--fault kill|units|version|grid` on rank `--fault-rank` (kill: SIGKILL at step `--fault-at`).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time

import numpy as np
from mpi4py import MPI

sys.path.append(__file__.rsplit("/tests/", 1)[0])

from coupling.bridge import CoarseModel  # noqa: E402
from coupling.client import PhysicsClient  # noqa: E402
from coupling.forcing import open_forcing  # noqa: E402
from coupling.layout import Layout, split_blocks  # noqa: E402
from coupling.member_fields import read_fields, set_corrected  # noqa: E402
from coupling.model_protocol import model_hello  # noqa: E402
from coupling.pairs import state_arrays, window_states  # noqa: E402
from coupling.protocol import UNIT_CODES, VARIABLE_CODES  # noqa: E402
from coupling.transport import abort_on_error  # noqa: E402
from icecorr.base.config import load_config  # noqa: E402
from icecorr.cli.runconfig import CoupleRunConfig  # noqa: E402


def widths(text: str) -> list[slice]:
    edges = np.cumsum([0, *map(int, text.split(","))])
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def faulty(hello, fault: str):
    if fault == "units":   # sit in cm
        units = tuple(UNIT_CODES["cm"] if c == VARIABLE_CODES["sit"] else u for c, u in zip(hello.variables,
                                                                                               hello.units))
        return dataclasses.replace(hello, units=units)
    if fault == "version":
        return dataclasses.replace(hello, version=2)
    if fault == "grid":
        return dataclasses.replace(hello, dx=hello.dx * 2)
    return hello


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--groups", type=int, default=1)
    ap.add_argument("--rows", default="")
    ap.add_argument("--cols", default="")
    ap.add_argument("--fault", choices=["none", "kill", "units", "version", "grid"], default="none")
    ap.add_argument("--fault-rank", type=int, default=0)
    ap.add_argument("--fault-at", type=int, default=1)
    a = ap.parse_args()
    cfg = load_config(CoupleRunConfig, a.config, [])
    run, grid = cfg.couple, cfg.grid
    world = MPI.COMM_WORLD
    with abort_on_error("tile_client", world.Get_rank(), "physics", world):
        lay = Layout.build(world, None, role="physics")
        rows = widths(a.rows or str(grid.ny))
        cols = widths(a.cols or str(grid.nx))
        me = lay.physics_ranks.index(lay.rank)
        per_group = len(rows) * len(cols)
        group, t = divmod(me, per_group)
        tiles = [(r, c) for r in rows for c in cols]
        rsl, csl = tiles[t]
        slots = split_blocks(len(run.start_indices) * run.members, a.groups)[group]
        team = lay.local.Split(group, lay.rank)   # the ranks holding the tiles of this group's members

        forcing = open_forcing(cfg.forcing or cfg.initial)
        states = window_states(cfg.initial, run.start_indices, shape=(grid.ny, grid.nx))
        models = []
        for s in slots:
            m = CoarseModel(grid, cfg.physics)
            m.set_state(state_arrays(states[s // run.members]))
            models.append(m)
        hello = dataclasses.replace(model_hello(models[0], grid, slots, -1, run.steps, 0), state=(), state_units=(),
                                    n_extras=0, j0=rsl.start + 1, j1=rsl.stop, i0=csl.start + 1, i1=csl.stop)
        if me == a.fault_rank:
            hello = faulty(hello, a.fault)
        client = PhysicsClient(lay, run.timeouts.handshake, run.timeouts.step, verb="tile_client")
        reply = client.hello(hello)
        nv, n = len(client.variables), len(slots)
        full = np.zeros((n, 2, nv, grid.ny, grid.nx))
        corrected = np.zeros((n, nv, grid.ny, grid.nx))
        sizes = [n * nv * (r.stop - r.start) * (c.stop - c.start) for r, c in tiles]
        gathered = np.zeros(sum(sizes))

        def assemble() -> None:
            team.Allgatherv(np.ascontiguousarray(client.corrected).ravel(), [gathered, sizes])
            at = 0
            for (r, c), k in zip(tiles, sizes):
                corrected[:, :, r, c] = gathered[at:at + k].reshape(n, nv, r.stop - r.start, c.stop - c.start)
                at += k

        for i, m in enumerate(models):
            read_fields(m, client.variables, full[i, 0])
        client.fields[:, 0] = full[:, 0, :, rsl, csl]
        client.start()
        if reply.perturbs:
            assemble()
            for i, m in enumerate(models):
                set_corrected(m, client.variables, corrected[i], full[i, 0])
        for step in range(reply.n_steps):
            if a.fault == "kill" and me == a.fault_rank and step == a.fault_at:
                print(f"killing physics process (rank {lay.rank}) at t={time.time():.3f}", file=sys.stderr,
                      flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            for i, (s, m) in enumerate(zip(slots, models)):
                read_fields(m, client.variables, full[i, 0])
                m.step(*forcing.pair(run.start_indices[s // run.members] + step))
                read_fields(m, client.variables, full[i, 1])
            client.correct(step, full[:, 0, :, rsl, csl], full[:, 1, :, rsl, csl])
            assemble()
            for i, m in enumerate(models):
                set_corrected(m, client.variables, corrected[i], full[i, 1])
        client.end(reply.n_steps - 1)
        print(f"physics rank {lay.rank}: slots {list(slots)} tile rows {rsl.start}:{rsl.stop} "
              f"cols {csl.start}:{csl.stop} ok", flush=True)
        team.Free()
        lay.free()
    return 0


if __name__ == "__main__":
    sys.exit(main())
