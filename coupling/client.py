"""The physics side of the coupling protocol in Python (docs/coupling-protocol.md): one `PhysicsClient` per physics
rank, talking to its ML partner over the coupling communicator of a `coupling.layout.Layout`.

    client = PhysicsClient(lay, timeout_handshake, timeout_step)
    reply = client.hello(Hello(...))            # refused: prints the server's text, acknowledges, HandshakeError
    client.fields[:, 0] = ...; client.fields[:, 1] = ...    # (n_slots, 2, n_exchange, tile_ny, tile_nx)
    corrected = client.start()                  # initial exchange (before step 0)
    corrected = client.correct(step)            # after each 12 h step; or correct(step, before, after)
    client.send_state(step, states, extras)     # restart states, when (step + 1) % reply.restart_interval == 0
    client.end(step)                            # after the last step;  client.abort(text) when failing

A rank may hold a tile (rows j0..j1, columns i0..i1 of the global grid, 1-based inclusive) of its slots' fields:
its buffers are tile-shaped. A rank without slots takes no part in the cycle (its calls do nothing).
"""
from __future__ import annotations

import sys

import numpy as np

from .handshake import HandshakeError
from .layout import Layout
from .protocol import (KIND_ABORT, KIND_END, KIND_INITIAL, KIND_RESTART, KIND_STEP, REPLY_FIXED, STATUS_ACCEPTED,
                       TAG_ACK, TAG_CORRECTED, TAG_EXTRAS, TAG_FIELDS, TAG_HEADER, TAG_HELLO_INT, TAG_HELLO_REAL,
                       TAG_REPLY, TAG_STATE, TAG_TEXT, Hello, Reply, decode_text, encode_text, header,
                       variable_name)
from .transport import wait_all

#: how long an aborting rank tries to deliver its abort header and text (s) before MPI_Abort
ABORT_GRACE = 1.0


class PhysicsClient:
    """The protocol as seen by one physics rank: hello, the per-step exchange, restart states, end, abort."""

    def __init__(self, lay: Layout, timeout_handshake: float, timeout_step: float, verb: str = "couple"):
        self.lay, self.verb = lay, verb
        self.comm, self.rank = lay.comm, lay.rank
        self.partner = lay.ml_of[lay.rank]
        self.timeout_handshake, self.timeout = timeout_handshake, timeout_step
        self.reply: Reply | None = None
        self.hello_sent: Hello | None = None
        self.step = -1

    # ------------------------------------------------------------------------------------------------ start-up
    def hello(self, hello: Hello) -> Reply:
        """Send `hello`, receive the partner's reply; on a refusal print its text, acknowledge and raise
        HandshakeError. Allocates the exchange buffers (`fields`, `corrected`)."""
        ints, reals = hello.encode()
        answer = np.zeros(REPLY_FIXED + len(hello.variables), dtype=np.int32)
        reqs = [self.comm.Isend(ints, dest=self.partner, tag=TAG_HELLO_INT),
                self.comm.Isend(reals, dest=self.partner, tag=TAG_HELLO_REAL),
                self.comm.Irecv(answer, source=self.partner, tag=TAG_REPLY)]
        wait_all(reqs, self.timeout_handshake, f"the handshake reply of ML rank {self.partner}", self.rank)
        reply = Reply.decode(answer)
        if reply.status != STATUS_ACCEPTED:
            text = np.zeros(reply.text_length, dtype=np.int32)
            wait_all([self.comm.Irecv(text, source=self.partner, tag=TAG_TEXT)], self.timeout_handshake,
                     f"the refusal text of ML rank {self.partner}", self.rank)
            message = decode_text(text)
            print(f"icecorr {self.verb}: physics rank {self.rank}: ML rank {self.partner} refused the handshake "
                  f"(status {reply.status}): {message}", file=sys.stderr, flush=True)
            wait_all([self.comm.Isend(np.zeros(0, dtype=np.int32), dest=self.partner, tag=TAG_ACK)],
                     self.timeout_handshake, f"acknowledging the refusal to ML rank {self.partner}", self.rank)
            raise HandshakeError(f"ML rank {self.partner} refused the handshake: {message}")
        self.reply, self.hello_sent = reply, hello
        tny, tnx = hello.tile_shape
        n, nv = hello.n_slots, len(reply.exchange)
        self.fields = np.zeros((n, 2, nv, tny, tnx))     # [:, 0] start of the step, [:, 1] its forecast
        self.corrected = np.zeros((n, nv, tny, tnx))
        return reply

    @property
    def variables(self) -> list[str]:
        """Names of the exchanged variables, in exchange order (after `hello`)."""
        return [variable_name(c) for c in self.reply.exchange]

    @property
    def active(self) -> bool:
        """True if this rank holds slots (takes part in the cycle)."""
        return self.hello_sent is not None and self.hello_sent.n_slots > 0

    # ------------------------------------------------------------------------------------------------ the cycle
    def _exchange(self, kind: int, step: int) -> np.ndarray:
        self.step = step
        if not self.active:
            return self.corrected
        reqs = [self.comm.Isend(header(kind, step), dest=self.partner, tag=TAG_HEADER),
                self.comm.Isend(self.fields, dest=self.partner, tag=TAG_FIELDS),
                self.comm.Irecv(self.corrected, source=self.partner, tag=TAG_CORRECTED)]
        wait_all(reqs, self.timeout, f"corrected fields from ML rank {self.partner}", self.rank)
        return self.corrected

    def start(self) -> np.ndarray:
        """The initial exchange (`fields[:, 0]` = `fields[:, 1]` = the initial state); returns `corrected` (apply
        it only if `reply.perturbs`)."""
        self.fields[:, 1] = self.fields[:, 0]
        return self._exchange(KIND_INITIAL, -1)

    def correct(self, step: int, before: np.ndarray | None = None, after: np.ndarray | None = None) -> np.ndarray:
        """Exchange after the 12 h step `step` (0-based): `before`/`after` (n_slots, n_exchange, tile_ny, tile_nx)
        are copied into `fields` unless the caller filled it; returns `corrected` (same shape)."""
        if before is not None:
            self.fields[:, 0] = before
        if after is not None:
            self.fields[:, 1] = after
        return self._exchange(KIND_STEP, step)

    def send_state(self, step: int, states: np.ndarray, extras: np.ndarray) -> None:
        """Restart state after step `step` to the writer: states (n_slots, n_state, ny, nx), extras
        (n_slots, n_extras), float64 C order."""
        if not self.active:
            return
        writer = self.reply.writer
        states = np.ascontiguousarray(states, dtype=np.float64)
        extras = np.ascontiguousarray(extras, dtype=np.float64)
        reqs = [self.comm.Isend(header(KIND_RESTART, step), dest=writer, tag=TAG_HEADER),
                self.comm.Isend(states, dest=writer, tag=TAG_STATE),
                self.comm.Isend(extras, dest=writer, tag=TAG_EXTRAS)]
        wait_all(reqs, self.timeout, f"restart state delivery to writer rank {writer}", self.rank)

    def end(self, step: int) -> None:
        """Tell the partner that this rank ran its last step (`step`)."""
        if self.active:
            wait_all([self.comm.Isend(header(KIND_END, step), dest=self.partner, tag=TAG_HEADER)], self.timeout,
                     f"the end message to ML rank {self.partner}", self.rank)

    def abort(self, text: str) -> None:
        """Best effort: the abort header and `text` to the partner within ABORT_GRACE s (the caller then calls
        MPI_Abort). Never raises."""
        if self.reply is None or self.comm is None:
            return
        try:
            reqs = [self.comm.Isend(header(KIND_ABORT, self.step), dest=self.partner, tag=TAG_HEADER),
                    self.comm.Isend(encode_text(text), dest=self.partner, tag=TAG_TEXT)]
            wait_all(reqs, ABORT_GRACE, "abort delivery", self.rank)
        except Exception:  # noqa: BLE001 - the job is being aborted anyway (PeerTimeout or a broken comm)
            pass
