"""`icecorr emulate`: an emulator-mode corrector advances the ML variables in autoregressive 12 h steps.

    run_emulate(cfg, initial_state, forcing_source, out_path, restart=None, comm=WORLD) -> list[Path]

Same windows, members, seeding, output and restart files as `icecorr couple` (coupling.couple); no physics model.
Under MPI every rank samples a contiguous block of slots (members × windows) and rank 0 writes.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from icecorr.base.errors import InputError
from icecorr.base.mpi import resolve_comm
from icecorr.inputs.state_file import StateFile
from .checks import check_corrector_units, check_mask
from .config import CoupleConfig
from .ensemble import EnsembleCorrection, check_mode, load_corrector, make_perturbation, with_sampler
from .ensemble_output import EnsembleOutput, checkpoint_attrs, global_attrs, output_paths
from .forcing import open_forcing
from .layout import WORLD, split_blocks
from .member_fields import check_members_finite
from .pairs import preflight_inputs, state_arrays, window_states
from .restart import check_continuation, check_same_checkpoint, read_restart
from .transport import TAG_OUTPUT, abort_on_error, wait_all


def run_emulate(cfg: CoupleConfig, initial_state, forcing_source, out_path: str | Path | None = None,
                restart: str | Path | None = None, comm=WORLD, *, corrector=None, command: str | None = None,
                config_text: str | None = None, stats: dict | None = None) -> list[Path]:
    """Emulator ensemble: an emulator-mode corrector advances the ML variables in autoregressive 12 h steps.

    initial_state: as for `run_couple` (a pair-file path, a `StateFile`, one state or one per window).
    Same windows, members, seeding, output and restart files as `run_couple`; under MPI every rank samples a
    contiguous block of slots (members × windows) and rank 0 writes.
    """
    world = resolve_comm(comm)
    out_path = Path(out_path if out_path is not None else cfg.output)
    paths = output_paths(out_path, cfg.start_indices)
    rank = world.Get_rank() if world is not None else 0
    size = world.Get_size() if world is not None else 1
    with abort_on_error("emulate", rank, "ml", world):
        run_comm = world.Dup() if size > 1 else None
        try:
            _emulate(cfg, run_comm, rank, size, initial_state, forcing_source, paths, restart, corrector, command,
                     config_text, stats)
        finally:
            if run_comm is not None:
                run_comm.Free()
    return paths


def _emulate(cfg, comm, rank, size, initial_state, forcing_source, paths, restart, corrector, command,
             config_text, stats) -> None:
    forcing = open_forcing(forcing_source)
    for s in cfg.start_indices:
        forcing.check_window(s, cfg.steps)
    if isinstance(initial_state, StateFile) and restart is None:
        initial_state = initial_state.window_states([forcing.time(s) for s in cfg.start_indices])
    m, n_slots = cfg.members, len(cfg.start_indices) * cfg.members
    blocks = split_blocks(n_slots, size)
    mine = blocks[rank]
    if corrector is None:
        corrector = load_corrector(cfg.checkpoint, "emulator")
    check_mode(corrector, "emulator", "icecorr emulate")
    corrector = with_sampler(corrector, cfg.sampler)
    check_corrector_units(corrector)  # the checks of every verb (correct, couple): coupling.checks
    check_mask(getattr(forcing, "path", None), forcing.mask, corrector)
    variables = list(corrector.variables)
    cgrid = getattr(corrector, "grid", {}) or {}
    cshape = (int(cgrid["ny"]), int(cgrid["nx"])) if "ny" in cgrid and "nx" in cgrid else None
    preflight_inputs(forcing, cfg, cshape, initial_state if restart is None else None, variables,
                      "the checkpoint's grid")
    rstate = None
    if restart is not None:
        rstate = read_restart(restart)
        check_continuation(restart, rstate, "emulate", cfg.start_indices, m, cfg.seed)
        check_same_checkpoint(restart, rstate, cfg.checkpoint, corrector)
        missing = [v for v in variables if v not in rstate.states]
        if missing:
            raise InputError(str(restart), missing[0], "missing from the restart file")
        full = np.stack([rstate.states[v].reshape(n_slots, *rstate.states[v].shape[2:]) for v in variables], 1)
    else:
        states = [state_arrays(s) for s in window_states(initial_state, cfg.start_indices, variables)]
        for w, st in enumerate(states):
            missing = [v for v in variables if v not in st]
            if missing:
                raise InputError(None, missing[0], f"initial state of window {w} lacks it")
        full = np.stack([np.stack([states[s // m][v] for v in variables]) for s in range(n_slots)])
    shape = full.shape[-2:]
    if "ny" in cgrid and (int(cgrid["ny"]), int(cgrid["nx"])) != tuple(shape):
        raise InputError(None, "grid", f"initial state is {tuple(shape)} (ny, nx) but the checkpoint was trained on "
                                       f"({cgrid['ny']}, {cgrid['nx']})")
    state = np.ascontiguousarray(full[mine.start:mine.stop])
    correct = EnsembleCorrection(corrector, forcing, cfg.start_indices, m, cfg.seed, cfg.sampler_steps)
    perturb = make_perturbation(cfg.initial_perturbation, cfg.seed, cfg.start_indices, m, variables, forcing.mask)

    output = None
    if rank == 0:
        attrs = checkpoint_attrs(corrector, variables)
        dx = float(cgrid.get("dx", 1.0)) if cgrid else 1.0
        output = EnsembleOutput(cfg, paths, variables, attrs, tuple(shape), dx, forcing,
                                global_attrs("emulate", cfg, corrector, command, config_text), "emulate", rstate,
                                variables, {v: attrs[v]["units"] for v in variables})
        everything = np.zeros((n_slots, len(variables), *shape))
    timeout = cfg.timeouts.step

    def emit(step: int, write_restart_now: bool) -> None:
        if comm is None or size == 1:
            gathered = state
        elif rank != 0:
            if len(mine):
                wait_all([comm.Isend(state, dest=0, tag=TAG_OUTPUT)], timeout, "output delivery to rank 0", rank)
            return
        else:
            everything[mine.start:mine.stop] = state
            reqs = [comm.Irecv(everything[b.start:b.stop], source=r, tag=TAG_OUTPUT)
                    for r, b in enumerate(blocks) if r != 0 and len(b)]
            wait_all(reqs, timeout, "emulated states from the other ranks", rank)
            gathered = everything
        output.record(step, None, None, gathered)
        if write_restart_now:
            output.restart(step, gathered)

    status = "failed"
    t_ml, t_cycle = [], []
    try:
        first = rstate.step if rstate is not None else 0
        if rstate is None:
            if perturb is not None and len(mine):
                state = np.ascontiguousarray(perturb(mine, state))
            emit(0, False)
        for step in range(first, cfg.steps):
            t0 = time.perf_counter()
            if len(mine):
                new = correct(step, mine, state, None)
                check_members_finite(f"emulated state at step {step}", new, variables, mine, m)
                state = np.ascontiguousarray(new)
            t_ml.append(time.perf_counter() - t0)
            done = step + 1
            emit(done, bool(cfg.restart_interval) and done % cfg.restart_interval == 0)
            t_cycle.append(time.perf_counter() - t0)
        status = "complete"
    finally:
        if output is not None:
            output.close(status)
    if stats is not None:
        stats.update(ml=t_ml, cycle=t_cycle, bounds_counts=dict(correct.bounds_counts),
                     last_restart=output.last_restart if output else None)
