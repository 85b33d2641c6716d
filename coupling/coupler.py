"""MPI mechanics of coupled runs: roles, member layout, deadlines, abort-on-error, start-up handshake, exchange.

Ranks have one role each: `physics` ranks hold ensemble members (one model object per member), `ml` ranks hold the
corrector. A role comes from the `role` argument, else the `ICECORR_ROLE` environment variable (MPMD launches:
`mpiexec -n 2 -x ICECORR_ROLE=physics … : -n 1 -x ICECORR_ROLE=ml …`), else the MPMD application number (the last
application context is ML), else the last `ml_ranks` ranks are ML. One process alone plays both roles.

Every wait on a peer is a `Test` loop with a deadline, so a dead or hung peer aborts the job (`MPI.COMM_WORLD.Abort`)
with a message naming the waiting rank and the silent peer, instead of hanging. Data travel as buffer-based
(upper-case) messages between preallocated float64 arrays; only the start-up handshake is pickled.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np

ROLE_ENV = "ICECORR_ROLE"
ROLES = ("physics", "ml")
# Waiting polls `Test`: without pause for SPIN s, then sleeping in between, backing off from MIN_PAUSE to MAX_PAUSE
# (s). A rendezvous transfer progresses only inside Test calls and completes within the spin (a rank that sleeps
# on a busy machine may lose its core for a whole time slice, ~4 ms), while a rank waiting for a computing peer
# sleeps and leaves the cores to it (ranks outnumber cores): at most SPIN of stolen time per wait.
SPIN = 1e-3
MIN_PAUSE = 1e-5
MAX_PAUSE = 5e-4

# message tags (one duplicated communicator per run keeps them apart from anything else)
TAG_HELLO, TAG_REPLY, TAG_FIELDS, TAG_CORRECTED, TAG_OUTPUT, TAG_STATE = range(1, 7)


class PeerTimeout(RuntimeError):
    """A peer rank did not answer before the deadline: it died or hung."""


class HandshakeError(RuntimeError):
    """Physics and ML ranks disagree on variables, units or grid."""


# --------------------------------------------------------------------------------------------------- roles/layout
def _split(n: int, parts: int) -> list[range]:
    """`n` items in `parts` contiguous, nearly equal blocks (the first ones one larger)."""
    base, extra = divmod(n, parts)
    out, lo = [], 0
    for p in range(parts):
        hi = lo + base + (p < extra)
        out.append(range(lo, hi))
        lo = hi
    return out


def resolve_roles(comm, ml_ranks: int = 1, role: str | None = None) -> list[str]:
    """The role of every rank of `comm` (collective). See the module docstring for the precedence."""
    if comm is None or comm.Get_size() == 1:
        return ["both"]
    from mpi4py import MPI

    mine = role or os.environ.get(ROLE_ENV) or None
    if mine is not None and mine not in ROLES:
        raise ValueError(f"rank {comm.Get_rank()}: role {mine!r} (from argument or ${ROLE_ENV}) must be one of {ROLES}")
    appnum = comm.Get_attr(MPI.APPNUM) if comm == MPI.COMM_WORLD else None
    gathered = comm.allgather((mine, -1 if appnum is None else int(appnum)))
    size = len(gathered)
    given = [g[0] for g in gathered]
    apps = [g[1] for g in gathered]
    if any(given):
        # ranks without a role are physics: the ML part of an MPMD launch is usually the one that sets it
        roles = [g or "physics" for g in given]
    elif max(apps) > 0:
        roles = ["ml" if a == max(apps) else "physics" for a in apps]
    else:
        if ml_ranks >= size:
            raise ValueError(f"{size} ranks leave no physics rank with ml_ranks={ml_ranks}")
        roles = ["physics"] * (size - ml_ranks) + ["ml"] * ml_ranks
    if "physics" not in roles or "ml" not in roles:
        raise ValueError(f"roles {roles}: a coupled run needs at least one physics and one ml rank")
    return roles


@dataclass
class Layout:
    """Who does what: roles, the ensemble slots (window × member) of each physics rank, the ML rank serving it."""

    comm: object | None              # run communicator (a Dup of the caller's), None in one process
    rank: int
    roles: list[str]
    n_slots: int
    slots_of: dict[int, range] = field(default_factory=dict)   # physics rank -> its slots
    ml_of: dict[int, int] = field(default_factory=dict)         # physics rank -> serving ML rank

    @classmethod
    def build(cls, comm, n_slots: int, ml_ranks: int = 1, role: str | None = None) -> "Layout":
        roles = resolve_roles(comm, ml_ranks, role)
        run_comm = comm.Dup() if comm is not None and comm.Get_size() > 1 else None
        rank = comm.Get_rank() if run_comm is not None else 0
        lay = cls(run_comm, rank, roles, n_slots)
        physics = lay.physics_ranks
        for p, block in zip(physics, _split(n_slots, len(physics))):
            lay.slots_of[p] = block
        for m, group in zip(lay.ml_ranks, _split(len(physics), len(lay.ml_ranks))):
            for i in group:
                lay.ml_of[physics[i]] = m
        return lay

    @property
    def size(self) -> int:
        return len(self.roles)

    @property
    def role(self) -> str:
        return self.roles[self.rank]

    @property
    def physics_ranks(self) -> list[int]:
        return [r for r, x in enumerate(self.roles) if x in ("physics", "both")]

    @property
    def ml_ranks(self) -> list[int]:
        return [r for r, x in enumerate(self.roles) if x in ("ml", "both")]

    @property
    def writer(self) -> int:
        """The one rank that writes output and restart files: the first ML rank."""
        return self.ml_ranks[0]

    def served_by(self, ml_rank: int) -> list[int]:
        """Physics ranks (with at least one slot) whose members `ml_rank` corrects, in slot order."""
        return [p for p in self.physics_ranks if self.ml_of[p] == ml_rank and len(self.slots_of[p])]

    def ml_slots(self, ml_rank: int) -> range:
        """The contiguous slots corrected by `ml_rank`."""
        ps = self.served_by(ml_rank)
        if not ps:
            return range(0, 0)
        return range(self.slots_of[ps[0]].start, self.slots_of[ps[-1]].stop)

    @property
    def my_slots(self) -> range:
        return self.slots_of.get(self.rank, range(0, 0))

    def free(self) -> None:
        if self.comm is not None:
            self.comm.Free()
            self.comm = None


# --------------------------------------------------------------------------------------------- deadlines / abort
@lru_cache(maxsize=1)
def _fine_sleep() -> None:
    """Linux rounds short sleeps up by the timer slack (50 µs by default); 1 µs slack makes 10 µs polls possible."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK, in ns
    except (OSError, AttributeError):  # not Linux: coarser polls, same behaviour
        pass


def wait_all(requests: Sequence, timeout: float, what: str, rank: int) -> None:
    """Complete `requests` or raise PeerTimeout after `timeout` s. Sleeps between polls (back-off up to MAX_PAUSE)."""
    requests = list(requests)
    if not requests:
        return
    # imported only here: initialising MPI in a one-process run forks Open MPI's orted, which would inherit (and keep
    # locked) any NetCDF file open at that moment
    from mpi4py import MPI
    _fine_sleep()
    start = time.monotonic()
    deadline, spin_until = start + timeout, start + SPIN
    pause = MIN_PAUSE
    while not MPI.Request.Testall(requests):
        now = time.monotonic()
        if now > deadline:
            raise PeerTimeout(f"timed out after {timeout:g} s waiting for {what} (the peer rank died or hung)")
        if now > spin_until:
            time.sleep(pause)
            pause = min(2 * pause, MAX_PAUSE)


def recv_object(comm, source: int, tag: int, timeout: float, what: str):
    """Receive a pickled object with a deadline (start-up only: never on the data path)."""
    from mpi4py import MPI

    deadline = time.monotonic() + timeout
    pause = 1e-4
    status = MPI.Status()
    while not comm.Iprobe(source=source, tag=tag, status=status):
        if time.monotonic() > deadline:
            raise PeerTimeout(f"timed out after {timeout:g} s waiting for {what} from rank {source} "
                              f"(the peer rank died or hung)")
        time.sleep(pause)
        pause = min(2 * pause, 10 * MAX_PAUSE)
    return comm.recv(source=status.Get_source(), tag=tag)


def send_object(comm, obj, dest: int, tag: int, timeout: float, what: str) -> None:
    req = comm.isend(obj, dest=dest, tag=tag)
    deadline = time.monotonic() + timeout
    while not req.Test():
        if time.monotonic() > deadline:
            raise PeerTimeout(f"timed out after {timeout:g} s sending {what} to rank {dest}")
        time.sleep(1e-4)


def failure_message(verb: str, rank: int, role: str, exc: BaseException) -> str:
    return f"icecorr {verb}: rank {rank} ({role}) failed: {type(exc).__name__}: {exc}"


@contextmanager
def abort_on_error(verb: str, rank: int, role: str, world) -> Iterator[None]:
    """Turn any exception on this rank into one message naming the rank and cause, then abort the whole job.

    With one process (`world` None or of size 1) the exception propagates unchanged instead.
    """
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - every failure must end the job, not hang it
        if world is None or world.Get_size() == 1:
            raise
        sys.stderr.write(traceback.format_exc())
        sys.stderr.write(failure_message(verb, rank, role, exc) + "\n")
        sys.stderr.flush()
        world.Abort(1)


# ------------------------------------------------------------------------------------------------------ handshake
def model_description(grid_shape: tuple[int, int], dx: float, units: dict[str, str], state_names: list[str]) -> dict:
    """What a physics rank tells its ML rank at start-up."""
    return {"grid": [int(grid_shape[0]), int(grid_shape[1])], "dx": float(dx), "units": dict(units),
            "state_names": list(state_names)}


def check_description(desc: dict, reference: dict, variables: Sequence[str], corrector_units: dict[str, str],
                      corrector_grid: tuple[int, int] | None, who: str) -> None:
    """Raise HandshakeError naming what differs between a physics rank (`desc`) and the ML side."""
    if desc["grid"] != reference["grid"] or abs(desc["dx"] - reference["dx"]) > 1e-9 * reference["dx"]:
        raise HandshakeError(f"{who} has grid {desc['grid']} (dx={desc['dx']} m) but the run uses "
                             f"{reference['grid']} (dx={reference['dx']} m)")
    if corrector_grid is not None and tuple(desc["grid"]) != tuple(corrector_grid):
        raise HandshakeError(f"{who} has grid (ny, nx)={tuple(desc['grid'])} but the checkpoint was trained on "
                             f"{tuple(corrector_grid)}")
    missing = [v for v in variables if v not in desc["units"]]
    if missing:
        raise HandshakeError(f"{who} does not provide variable(s) {missing} that the corrector corrects")
    for v in variables:
        want = corrector_units.get(v)
        if want is not None and desc["units"][v] != want:
            raise HandshakeError(f"{who}: variable '{v}' has units {desc['units'][v]!r} but the corrector "
                                 f"expects {want!r}")
    if desc["state_names"] != reference["state_names"]:
        raise HandshakeError(f"{who} has state variables {desc['state_names']} but rank "
                             f"{reference.get('rank')} has {reference['state_names']}")


# ------------------------------------------------------------------------------------------------- model helpers
def read_fields(model, names: Sequence[str], out: np.ndarray) -> np.ndarray:
    """Copy the named (ny, nx) fields of `model` into `out[i]` (zero-copy views when the bridge has them)."""
    views = model.state_views()
    if all(n in views for n in names):
        for i, n in enumerate(names):
            out[i] = views[n]
    else:
        state = model.get_state()
        for i, n in enumerate(names):
            out[i] = state[n].values
    return out


def set_corrected(model, variables: Sequence[str], corrected: np.ndarray, forecast: np.ndarray) -> None:
    """Hand the corrected ML fields back to the model, touching only what the correction changed.

    Unchanged fields are left alone so that a zero correction leaves the model bit-identical to an uncoupled run
    (re-deriving the volume V = h·A from h = V/A would round). When concentration changes, the corrected thickness
    and snow depth go along, so the volumes follow the corrected A and h.
    """
    changed = {v: corrected[i] for i, v in enumerate(variables) if not np.array_equal(corrected[i], forecast[i])}
    if not changed:
        return
    if "sic" in changed:
        for v in ("sit", "snt"):
            if v in variables:
                changed[v] = corrected[list(variables).index(v)]
    model.set_state(changed)


DERIVED = {"sit": "sivol", "snt": "snvol"}  # diagnostic h = V/A: restore the volume itself for an exact restart


def restore_state(model, state: dict[str, np.ndarray]) -> None:
    """Set a full model state saved by `get_state` (restart), skipping fields derived from ones also present."""
    model.set_state({k: v for k, v in state.items() if not (k in DERIVED and DERIVED[k] in state)})


def hidden_state(model) -> np.ndarray:
    """Model state that `get_state` does not show but an exact restart needs, as a flat float64 array.

    Uses `model.restart_extras()` if the model offers it. Otherwise, for the CoarseModel bridge: the shear stress at
    the west- and south-wall corners (its `sig12` view holds only north-east corners), the dynamics-substep counter
    that alternates the transport split order, and the clock. (Private attributes: a workaround until the bridge
    exposes them.)
    """
    if hasattr(model, "restart_extras"):
        return np.asarray(model.restart_extras(), dtype=np.float64).ravel()
    parts = []
    s12 = getattr(model, "_s12", None)
    if s12 is not None:
        parts += [s12[0, :], s12[1:, 0]]
    parts.append([float(getattr(model, "_dyn_steps", 0)), float(getattr(model, "time_seconds", 0.0))])
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


def set_hidden_state(model, extras: np.ndarray) -> None:
    """Inverse of `hidden_state`."""
    extras = np.asarray(extras, dtype=np.float64)
    if hasattr(model, "set_restart_extras"):
        model.set_restart_extras(extras)
        return
    if extras.size != hidden_state(model).size:
        raise ValueError(f"restart extras have {extras.size} values, the model needs {hidden_state(model).size}")
    s12 = getattr(model, "_s12", None)
    i = 0
    if s12 is not None:
        n0, n1 = s12.shape[1], s12.shape[0] - 1
        s12[0, :] = extras[:n0]
        s12[1:, 0] = extras[n0:n0 + n1]
        i = n0 + n1
    if hasattr(model, "_dyn_steps"):
        model._dyn_steps = int(extras[i])
    if hasattr(model, "time_seconds"):
        model.time_seconds = float(extras[i + 1])


def check_finite(what: str, arr: np.ndarray, names: Sequence[str], slots: range, members: int) -> None:
    """Raise FloatingPointError naming the first member/field that holds NaN or inf."""
    ok = np.isfinite(arr)
    if ok.all():
        return
    bad = np.argwhere(~ok.reshape(arr.shape[0], len(names), -1).all(axis=-1))[0]
    slot = slots[int(bad[0])]
    raise FloatingPointError(f"{what}: non-finite values in '{names[int(bad[1])]}' of window {slot // members}, "
                             f"member {slot % members}")


# ------------------------------------------------------------------------------------------------------- engine
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
        check_finite(f"physics forecast at step {step}", self.p_fields[:, 1], self.variables, self.lay.my_slots,
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
        check_finite(f"corrected state at step {step}", out, self.variables, self.ml_slots, self.members)
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
