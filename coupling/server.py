"""The ML side of the coupling protocol (docs/coupling-protocol.md): hellos, replies, and the per-step transport
between an ML rank and its physics partners, tiles included.

    server = MLServer(lay, timeout_handshake, timeout_step)
    agreed = server.handshake(make_terms)        # receive + check every hello, reply (or refuse and raise)
    server.gather(kind, step)                    # headers + fields of the partners -> server.fields (whole grid)
    server.scatter()                             # server.corrected -> each partner's tile
    server.collect_states(step, states, extras)  # writer: restart states of every physics rank
    server.wait_end(step)

An untiled partner's fields travel straight into this rank's whole-field arrays (fields (n_slots, 2, n_exchange, ny,
nx), corrected (n_slots, n_exchange, ny, nx)); a tiled one's through a contiguous staging buffer and one copy
(numpy), which keeps every transfer contiguous: Open MPI moves those in one receiver-driven copy, while a strided
(subarray) datatype is pipelined through fragments that need the sender polling too — slow when ranks outnumber
cores (benchmarks/coupling_overhead.py).
"""
from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np

from .handshake import Agreed, HandshakeError, ServerTerms, check_hellos
from .layout import Layout
from .protocol import (KIND_ABORT, KIND_END, KIND_NAMES, KIND_RESTART, STATUS_ACCEPTED, STATUS_ERROR,
                       STATUS_REFUSED, TAG_ACK, TAG_CORRECTED, TAG_EXTRAS, TAG_FIELDS, TAG_HEADER, TAG_HELLO_INT,
                       TAG_HELLO_REAL, TAG_REPLY, TAG_STATE, TAG_TEXT, VARIABLE_CODES, Hello, Reply, decode_text,
                       encode_text)
from .transport import PeerTimeout, failure_message, probe_receive, wait_all

#: how long a refusing ML rank waits for the physics ranks' acknowledgements (s), so both messages get printed
ACK_WAIT = 5.0


class PhysicsAbort(RuntimeError):
    """A physics rank sent the abort header (its reason follows in the message)."""


class ProtocolError(RuntimeError):
    """A physics rank sent a message the protocol does not allow here."""


def share_hellos(local, mine: dict[int, tuple[np.ndarray, np.ndarray]], timeout: float, rank: int) -> dict:
    """Every ML rank's received hello buffers, on every ML rank: two allgathers (counts, then the int32 records
    `[launch rank, length, ints…]` and float64 rows) over the server communicator."""
    ints = np.concatenate([np.array([p, len(i), *i], dtype=np.int32) for p, (i, _) in mine.items()] or
                          [np.zeros(0, np.int32)])
    reals = np.concatenate([r for _, r in mine.values()] or [np.zeros(0)])
    counts = np.zeros((local.Get_size(), 2), dtype=np.int32)
    wait_all([local.Iallgather(np.array([ints.size, reals.size], dtype=np.int32), counts)], timeout,
             "the other ML ranks' hellos", rank)
    all_ints, all_reals = np.zeros(int(counts[:, 0].sum()), np.int32), np.zeros(int(counts[:, 1].sum()))
    wait_all([local.Iallgatherv(ints, [all_ints, list(counts[:, 0])]),
              local.Iallgatherv(reals, [all_reals, list(counts[:, 1])])], timeout, "the other ML ranks' hellos", rank)
    out, at, rat = {}, 0, 0
    while at < all_ints.size:
        p, n = int(all_ints[at]), int(all_ints[at + 1])
        out[p] = (all_ints[at + 2:at + 2 + n], all_reals[rat:rat + 4])
        at, rat = at + 2 + n, rat + 4
    return out


class MLServer:
    """One ML rank's side of the protocol: hellos and replies, then the exchange with its physics partners."""

    def __init__(self, lay: Layout, timeout_handshake: float, timeout_step: float, verb: str = "couple"):
        self.lay, self.verb = lay, verb
        self.comm, self.rank = lay.comm, lay.rank
        self.partners = lay.partners(lay.rank)
        self.timeout_handshake, self.timeout = timeout_handshake, timeout_step
        self.header_waits: list[float] = []   # s spent waiting for each step's headers (≈ the physics step)

    # ------------------------------------------------------------------------------------------------ start-up
    def receive_hellos(self) -> dict[int, Hello]:
        """The hello of every physics rank (partners' received here, the others' shared by their ML partners);
        a hello that does not decode is a refusal naming the rank."""
        mine = {}
        for p in self.partners:
            ints = probe_receive(self.comm, p, TAG_HELLO_INT, np.int32, self.timeout_handshake, "the hello")
            reals = np.zeros(4)
            wait_all([self.comm.Irecv(reals, source=p, tag=TAG_HELLO_REAL)], self.timeout_handshake,
                     f"the hello (reals) of physics rank {p}", self.rank)
            mine[p] = (ints, reals)
        if len(self.lay.ml_ranks) > 1:
            mine = share_hellos(self.lay.local, mine, self.timeout_handshake, self.rank)
        hellos, problems = {}, []
        for p in sorted(mine):
            try:
                hellos[p] = Hello.decode(*mine[p])
            except ValueError as exc:
                problems.append(f"physics rank {p}: {exc}")
        if problems:
            self.refuse(STATUS_REFUSED, "; ".join(problems))
            raise HandshakeError("; ".join(problems))
        return hellos

    def handshake(self, make_terms: Callable[[dict[int, Hello]], tuple[ServerTerms, bool, int]]) -> Agreed:
        """Receive and check every hello, then reply to the partners. `make_terms(hellos)` gives the ML side's
        (terms, perturbs, restart_interval) — it may load the corrector; a mismatch refuses with status 1, any
        other failure with status 2; both raise after the partners acknowledged (or ACK_WAIT s)."""
        hellos = self.receive_hellos()
        try:
            terms, perturbs, restart_interval = make_terms(hellos)
            agreed = check_hellos(hellos, terms)
        except HandshakeError as exc:
            self.refuse(STATUS_REFUSED, str(exc))
            raise
        except Exception as exc:  # noqa: BLE001 - told to the physics ranks, then re-raised
            self.refuse(STATUS_ERROR, failure_message(self.verb, self.rank, "ml", exc))
            raise
        codes = tuple(VARIABLE_CODES[v] for v in agreed.variables)
        reply = Reply(STATUS_ACCEPTED, terms.n_steps, restart_interval, perturbs, self.lay.writer, 0, codes).encode()
        wait_all([self.comm.Isend(reply, dest=p, tag=TAG_REPLY) for p in self.partners], self.timeout_handshake,
                 f"handshake replies to physics ranks {self.partners}", self.rank)
        self.lay.learn(agreed.slots_of, agreed.tiles, terms.total_slots)
        self._allocate(agreed)
        return agreed

    def refuse(self, status: int, text: str) -> None:
        """Reply `status` with `text` to every partner, print it, wait up to ACK_WAIT s for the acknowledgements."""
        print(f"icecorr {self.verb}: ML rank {self.rank} refused the handshake: {text}", file=sys.stderr, flush=True)
        codes = encode_text(text)
        reply = Reply(status, 0, text_length=codes.size).encode()
        reqs = []
        for p in self.partners:
            reqs += [self.comm.Isend(reply, dest=p, tag=TAG_REPLY), self.comm.Isend(codes, dest=p, tag=TAG_TEXT),
                     self.comm.Irecv(np.zeros(0, np.int32), source=p, tag=TAG_ACK)]
        try:
            wait_all(reqs, ACK_WAIT, "acknowledgements of the refusal", self.rank)
        except PeerTimeout:
            pass

    def _allocate(self, agreed: Agreed) -> None:
        """Whole-field buffers of this rank's slots; a contiguous staging buffer per tiled partner."""
        lay = self.lay
        self.slots = lay.ml_slots(self.rank)
        self.served = lay.served_by(self.rank)
        ny, nx = agreed.grid
        n, nv = len(self.slots), len(agreed.variables)
        self.fields = np.zeros((n, 2, nv, ny, nx))
        self.corrected = np.zeros((n, nv, ny, nx))
        self.where, self.recv_bufs, self.send_bufs, self.tiled = {}, {}, {}, []
        for p in self.served:
            s, (rows, cols) = lay.slots_of[p], lay.tiles[p]
            at = slice(s.start - self.slots.start, s.stop - self.slots.start)
            self.where[p] = (at, rows, cols)
            if (rows.stop - rows.start, cols.stop - cols.start) == (ny, nx):   # untiled: straight into place
                self.recv_bufs[p], self.send_bufs[p] = self.fields[at], self.corrected[at]
            else:
                shape = (len(s), nv, rows.stop - rows.start, cols.stop - cols.start)
                self.recv_bufs[p] = np.zeros((shape[0], 2, *shape[1:]))
                self.send_bufs[p] = np.zeros(shape)
                self.tiled.append(p)

    # ------------------------------------------------------------------------------------------------ the cycle
    def _headers(self, ranks: list[int], kind: int, step: int, what: str) -> None:
        """Receive one header from each of `ranks` and check it is (`kind`, `step`); an abort header raises
        PhysicsAbort with the rank's reason."""
        heads = {p: np.zeros(2, np.int32) for p in ranks}
        wait_all([self.comm.Irecv(h, source=p, tag=TAG_HEADER) for p, h in heads.items()], self.timeout,
                 f"{what} from physics ranks {ranks}", self.rank)
        for p, (k, s) in heads.items():
            if k == KIND_ABORT:
                text = probe_receive(self.comm, p, TAG_TEXT, np.int32, self.timeout, "the abort reason")
                raise PhysicsAbort(f"physics rank {p} aborted at step {s}: {decode_text(text)}")
            if (k, s) != (kind, step):
                raise ProtocolError(f"physics rank {p} sent {KIND_NAMES.get(int(k), f'kind {k}')} for step {s} "
                                    f"where the server expects {KIND_NAMES[kind]} for step {step}")

    def gather(self, kind: int, step: int) -> None:
        """Headers and fields of the step from every served partner into `fields` (whole grid)."""
        if not self.served:
            return
        reqs = [self.comm.Irecv(self.recv_bufs[p], source=p, tag=TAG_FIELDS) for p in self.served]
        t0 = time.perf_counter()
        self._headers(self.served, kind, step, "step headers")
        self.header_waits.append(time.perf_counter() - t0)
        wait_all(reqs, self.timeout, f"forecasts from physics ranks {self.served}", self.rank)
        for p in self.tiled:
            at, rows, cols = self.where[p]
            self.fields[at, :, :, rows, cols] = self.recv_bufs[p]

    def scatter(self) -> None:
        """Each served partner's tile of `corrected`."""
        for p in self.tiled:
            at, rows, cols = self.where[p]
            self.send_bufs[p][...] = self.corrected[at, :, rows, cols]
        reqs = [self.comm.Isend(self.send_bufs[p], dest=p, tag=TAG_CORRECTED) for p in self.served]
        wait_all(reqs, self.timeout, f"delivery of corrections to physics ranks {self.served}", self.rank)

    def collect_states(self, step: int, states: np.ndarray, extras: np.ndarray) -> None:
        """Writer: restart states (n_all_slots, n_state, ny, nx) and extras (n_all_slots, n_extras) after step
        `step` from every physics rank with slots."""
        lay = self.lay
        senders = [p for p in lay.physics_ranks if len(lay.slots_of.get(p, ()))]
        reqs = []
        for p in senders:
            s = lay.slots_of[p]
            reqs += [self.comm.Irecv(states[s.start:s.stop], source=p, tag=TAG_STATE),
                     self.comm.Irecv(extras[s.start:s.stop], source=p, tag=TAG_EXTRAS)]
        self._headers(senders, KIND_RESTART, step, "restart headers")
        wait_all(reqs, self.timeout, "restart states from the physics ranks", self.rank)

    def wait_end(self, step: int) -> None:
        """The end header of every served partner after its last step `step`."""
        if self.served:
            self._headers(self.served, KIND_END, step, "end messages")
