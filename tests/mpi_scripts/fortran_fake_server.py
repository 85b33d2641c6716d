"""A minimal ML side of docs/coupling-protocol.md in mpi4py, written from the document alone: checks the client's
hello, accepts it (or refuses with --refuse TEXT), returns a zero correction (CORRECTED = forecast) and saves every
received FIELDS message to --out (npz). Run as the last MPMD application: `… : -n 1 python -m mpi4py fake_server.py`.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from mpi4py import MPI


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--refuse", default="")
    parser.add_argument("--initial-changes", type=int, default=0)
    args = parser.parse_args()
    world = MPI.COMM_WORLD
    comm = world.Dup()
    appnum = world.Get_attr(MPI.APPNUM)
    roles = np.zeros((comm.Get_size(), 2), dtype=np.int32)
    comm.Allgather(np.array([1, -1 if appnum is None else appnum], dtype=np.int32), roles)
    comm.Split(1, comm.Get_rank())
    physics = [r for r in range(comm.Get_size()) if roles[r, 0] != 1]
    hellos = {}
    for p in physics:
        st = MPI.Status()
        comm.Probe(source=p, tag=7101, status=st)
        h = np.zeros(st.Get_count(MPI.INT32_T), dtype=np.int32)
        comm.Recv(h, source=p, tag=7101)
        dx = np.zeros(4)
        comm.Recv(dx, source=p, tag=7102)
        hellos[p] = h
        print(f"hello from {p}: {h[:16].tolist()} codes {h[16:].tolist()} dx {dx[0]}", flush=True)
    def exchange(p):  # the variables of the corrector it pretends to have (sic, sit, snt, siu, siv) it was offered
        n_vars = int(hellos[p][10])
        return [c for c in (1, 2, 3, 4, 5) if c in hellos[p][16:16 + n_vars]]

    if args.refuse:  # printed first (doc §4: both sides' messages reach the terminal)
        print(f"ML rank: refused: {args.refuse}", file=sys.stderr, flush=True)
    for p in physics:
        text = np.array([ord(c) for c in args.refuse], dtype=np.int32)
        reply = np.array([1 if args.refuse else 0, 1, hellos[p][14], 0, args.initial_changes, 0, len(text),
                          len(exchange(p)), *exchange(p)], dtype=np.int32)
        comm.Send(reply, dest=p, tag=7103)
        if args.refuse:
            comm.Send(text, dest=p, tag=7104)
    if args.refuse:
        for p in physics:
            comm.Recv(np.zeros(0, dtype=np.int32), source=p, tag=7105)
        world.Abort(1)
    records = {}
    done = set()
    while len(done) < len(physics):
        for p in physics:
            if p in done:
                continue
            header = np.zeros(2, dtype=np.int32)
            comm.Recv(header, source=p, tag=7200)
            kind, step = int(header[0]), int(header[1])
            if kind == 2:
                done.add(p)
                continue
            h = hellos[p]
            tny, tnx, n_slots = h[5] - h[4] + 1, h[7] - h[6] + 1, h[9]
            fields = np.zeros((n_slots, 2, len(exchange(p)), tny, tnx))
            comm.Recv(fields, source=p, tag=7201)
            comm.Send(np.ascontiguousarray(fields[:, 1]), dest=p, tag=7202)
            records[f"p{p}_k{kind}_s{step}"] = fields
            records[f"p{p}_tile"] = h[4:10]
    np.savez(args.out, **records)
    print(f"fake server saved {len(records)} arrays", flush=True)


if __name__ == "__main__":
    main()
