"""`icecorr couple`: a coupled ensemble run, physics ranks ⇄ ML ranks (or one process).

    run_couple(cfg, initial_state, forcing_source, out_path, restart=None, comm=WORLD) -> list[Path]

`comm` is an mpi4py communicator, `WORLD` (MPI.COMM_WORLD, imported only then) or None (one process, no MPI).
A run covers one or more windows (`cfg.start_indices`: forcing indices where windows start) of `cfg.members` members;
members × windows are batched on the ML rank(s). One window writes `out_path`; several write
`<stem>_w<start index><suffix>` each (see `output_paths`).

Data path: layout (roles, slots) → models from the initial or restart state → handshake → output files →
the coupled cycle (coupling.coupler.CoupledRun) → close.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from icecorr.base.errors import InputError
from icecorr.base.mpi import resolve_comm
from .bridge import CoarseModel
from .checks import check_corrector_units, check_mask
from .config import CoupleConfig
from .coupler import CoupledRun
from .ensemble import EnsembleCorrection, check_mode, load_corrector, make_perturbation
from .ensemble_output import EnsembleOutput, global_attrs, output_paths, table_attrs
from .forcing import open_forcing
from .handshake import describe_model, handshake
from .layout import WORLD, Layout
from .member_fields import restore_state, set_hidden_state
from .pairs import preflight_inputs, state_arrays, window_states
from .restart import check_continuation, check_same_checkpoint, read_restart
from .transport import abort_on_error


def run_couple(cfg: CoupleConfig, initial_state, forcing_source, out_path: str | Path | None = None,
               restart: str | Path | None = None, comm=WORLD, *, grid=None, physics=None,
               model_factory: Callable[[], object] | None = None, corrector=None, role: str | None = None,
               command: str | None = None, config_text: str | None = None, stats: dict | None = None) -> list[Path]:
    """Coupled ensemble run (physics ranks ⇄ ML ranks, or one process); returns the trajectory file of each window.

    initial_state: a pair-file path (`initial_{v}` at each start index), one state mapping/Dataset for all windows,
    or one per window. Models come from `model_factory()` (default `CoarseModel(grid, physics)`); the corrector from
    `corrector` (already loaded), else `cfg.checkpoint`, else the zero corrector. `restart`: a restart file to
    continue from (bit-identical to an uninterrupted run). `stats`, if given, receives timings and bound counts.
    """
    world = resolve_comm(comm)
    out_path = Path(out_path if out_path is not None else cfg.output)
    paths = output_paths(out_path, cfg.start_indices)
    rank = world.Get_rank() if world is not None else 0
    with abort_on_error("couple", rank, "?", world):
        lay = Layout.build(world, len(cfg.start_indices) * cfg.members, cfg.ml_ranks, role)
    with abort_on_error("couple", rank, lay.role, world):
        try:
            _couple(cfg, lay, world, initial_state, forcing_source, paths, restart, grid, physics, model_factory,
                    corrector, command, config_text, stats)
        finally:
            lay.free()
    return paths


def _member_models(slots: range, members: int, model_factory, states, rstate) -> list:
    """One model per slot from `model_factory()`, set to its window's initial state (`states[window]`) or, when
    continuing, to its member's state in the restart `rstate` (with the hidden state an exact restart needs)."""
    models = []
    for slot in slots:
        model = model_factory()
        w, k = divmod(slot, members)
        if rstate is not None:
            restore_state(model, rstate.member_state(w, k))
            if rstate.extras is not None:
                set_hidden_state(model, rstate.extras[w, k])
        else:
            model.set_state(state_arrays(states[w]))
        models.append(model)
    return models


def _couple(cfg, lay: Layout, world, initial_state, forcing_source, paths, restart, grid, physics, model_factory,
            corrector, command, config_text, stats) -> None:
    forcing = open_forcing(forcing_source)
    for s in cfg.start_indices:
        forcing.check_window(s, cfg.steps)
    grid_shape = (grid.ny, grid.nx) if grid is not None else None
    preflight_inputs(forcing, cfg, grid_shape, initial_state if restart is None else None)
    rstate = None
    if restart is not None:
        rstate = read_restart(restart)
        check_continuation(restart, rstate, "couple", cfg.start_indices, cfg.members, cfg.seed)
        check_same_checkpoint(restart, rstate, cfg.checkpoint, corrector)
        if rstate.step > cfg.steps:
            raise InputError(str(restart), "step", f"restart is at step {rstate.step}, beyond n_steps={cfg.steps}")
    m = cfg.members
    role = lay.role
    timeout = cfg.timeouts

    # ---- physics side: one model per slot, started from the window state or the restart
    models, desc = [], None
    if role in ("physics", "both"):
        if model_factory is None:
            def model_factory():
                return CoarseModel(grid, physics)
        states = None if rstate is not None else window_states(initial_state, cfg.start_indices, shape=grid_shape)
        models = _member_models(lay.my_slots, m, model_factory, states, rstate)
        desc = describe_model(models[0] if models else model_factory(), grid, lay.rank)

    # ---- ML side: corrector; then the handshake agrees on grid, units and variables
    if role in ("ml", "both"):
        if corrector is None:
            corrector = load_corrector(cfg.checkpoint, "residual", tuple(desc["grid"]) if desc else None)
        check_mode(corrector, "residual", "icecorr couple")
        check_corrector_units(corrector)  # the checks of every verb (correct, emulate): coupling.checks
        check_mask(getattr(forcing, "path", None), forcing.mask, corrector)
    if grid is not None and forcing.mask is not None and not np.array_equal(forcing.mask > 0.5, grid.ocean_mask() > 0.5):
        given = "none (all ocean)" if grid.mask is None else grid.mask if isinstance(grid.mask, str) else "inline"
        raise InputError(str(getattr(forcing, "path", None)), "mask", f"differs from grid.mask = {given} of the run config")
    desc_ref, variables = handshake(lay, desc, corrector, timeout.handshake)
    shape = tuple(desc_ref["grid"])

    # ---- writer: files; others: nothing to open
    output = None
    if lay.rank == lay.writer:
        attrs = {v: {**table_attrs(v, {}), **{k: a for k, a in desc_ref["attrs"].get(v, {}).items()
                                               if isinstance(a, (str, int, float))}} for v in variables}
        output = EnsembleOutput(cfg, paths, variables, attrs, shape, desc_ref["dx"], forcing,
                                global_attrs("couple", cfg, corrector, command, config_text), "couple", rstate,
                                desc_ref["state_names"], desc_ref["units"])
    correct = perturb = None
    if role in ("ml", "both"):
        correct = EnsembleCorrection(corrector, forcing, cfg.start_indices, m, cfg.seed, cfg.sampler_steps)
        perturb = make_perturbation(cfg.initial_perturbation, cfg.seed, cfg.start_indices, m, variables,
                                    forcing.mask)
    elif cfg.initial_perturbation > 0:
        perturb = True  # physics ranks only need to know that the initial exchange changes their state
    engine = CoupledRun(
        lay, world, variables, desc_ref["state_names"], shape, m, models,
        forcing_pair=lambda slot, step: forcing.pair(cfg.start_indices[slot // m] + step),
        correct=lambda step, slots, ini, fc: correct(step, slots, ini, fc),
        perturb=perturb, on_record=output.record if output else None,
        on_restart=output.restart if output else None, restart_interval=cfg.restart_interval,
        step_timeout=timeout.step, n_extras=desc_ref["n_extras"])
    status = "failed"
    try:
        first = rstate.step if rstate is not None else 0
        timings = engine.run(first, cfg.steps, initial_exchange=rstate is None)
        status = "complete"
    finally:
        if output is not None:
            output.close(status)
    if stats is not None:
        stats["timings"] = timings
        stats["layout"] = lay
        if correct is not None:
            stats["bounds_counts"] = dict(correct.bounds_counts)
        if output is not None:
            stats["last_restart"] = output.last_restart
