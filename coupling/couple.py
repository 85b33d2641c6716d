"""`icecorr couple`: a coupled ensemble run, physics ranks ⇄ ML ranks (or one process).

    run_couple(cfg, initial_state, forcing_source, out_path, restart=None, comm=WORLD) -> list[Path]

`comm` is an mpi4py communicator, `WORLD` (MPI.COMM_WORLD, imported only then) or None (one process, no MPI).
A run covers one or more windows (`cfg.start_indices`: forcing indices where windows start) of `cfg.members` members;
members × windows are batched on the ML rank(s). One window writes `out_path`; several write
`<stem>_w<start index><suffix>` each (see `output_paths`).

The physics ranks are Python clients of the coupling protocol (docs/coupling-protocol.md; coupling.client) and the
ML ranks its server (coupling.serve), as for any other model: layout (roles, slots) → models from the initial or
restart state → hello → the coupled cycle (coupling.coupler.PhysicsCycle ⇄ coupling.ml_cycle.MLCycle).
Models come from `model_factory`, else `cfg.model` (coupling.model_protocol), else the built-in CoarseModel.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from fortran_stub.config import CoarsePhysicsConfig
from icecorr.base.errors import InputError
from icecorr.base.mpi import resolve_comm
from icecorr.inputs.state_file import StateFile
from .bridge import CoarseModel
from .client import PhysicsClient
from .config import CoupleConfig
from .coupler import PhysicsCycle, Timings
from .ensemble_output import output_paths
from .forcing import open_forcing
from .layout import WORLD, Layout
from .member_fields import restore_state, set_hidden_state
from .member_physics import member_physics, member_strength_field
from .model_protocol import model_factory as load_factory, model_hello
from .pairs import preflight_inputs, state_arrays, window_states
from .serve import read_run_restart, serve_ranks
from .transport import abort_on_error


def run_couple(cfg: CoupleConfig, initial_state, forcing_source, out_path: str | Path | None = None,
               restart: str | Path | None = None, comm=WORLD, *, grid=None, physics=None,
               model_factory: Callable[[], object] | None = None, corrector=None, role: str | None = None,
               command: str | None = None, config_text: str | None = None, stats: dict | None = None) -> list[Path]:
    """Coupled ensemble run (physics ranks ⇄ ML ranks, or one process); returns the trajectory file of each window.

    initial_state: a pair-file path (`initial_{v}` at each start index), a `StateFile` (icecorr.inputs.state_file:
    the record at each window's start date), one state mapping/Dataset for all windows, or one per window. Models
    come from `model_factory()` (default `CoarseModel(grid, physics)`); the corrector from `corrector` (already
    loaded), else `cfg.checkpoint`, else the zero corrector. `restart`: a restart file to
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
    """One model per slot from `model_factory(member)`, set to its window's initial state (`states[window]`) or,
    when continuing, to its member's state in the restart `rstate` (with the hidden state an exact restart needs)."""
    models = []
    for slot in slots:
        w, k = divmod(slot, members)
        model = model_factory(k)
        if rstate is not None:
            restore_state(model, rstate.member_state(w, k))
            if rstate.extras is not None:
                set_hidden_state(model, rstate.extras[w, k])
        else:
            model.set_state(state_arrays(states[w]))
        models.append(model)
    return models


def _factory(cfg: CoupleConfig, grid, physics, model_factory):
    """The model factory of a run, called with the member index: the caller's, else `cfg.model`
    (Class(grid, **model_options)), else CoarseModel with the member's parameters (`cfg.physics_perturbation`)."""
    if model_factory is not None or cfg.model is not None:
        if cfg.perturbed_physics:
            raise InputError(None, f"couple.{cfg.perturbed_physics[0]}", "perturbs the built-in coarse model's "
                                                                         "physics; a model of your own (couple.model) "
                                                                         "perturbs its own")
        factory = model_factory if model_factory is not None else load_factory(cfg.model, grid, cfg.model_options)
        return lambda member=0: factory()

    def coarse(member: int = 0):
        model = CoarseModel(grid, member_physics(physics, cfg.physics_perturbation, cfg.seed, member))
        if cfg.strength_field is not None:
            model.set_strength_factor(member_strength_field((grid.ny, grid.nx), grid.dx, cfg.strength_field.sigma,
                                                            cfg.strength_field.length_km, cfg.seed, member))
        return model

    return coarse


def check_grid_mask(grid, forcing) -> None:
    """The run's grid (its `mask`, all ocean without one) and the forcing file's ocean mask agree: a forcing with land
    on a grid without it would run the physics without land. InputError naming the forcing file and the grid's mask."""
    if grid is None or forcing.mask is None or np.array_equal(forcing.mask > 0.5, grid.ocean_mask() > 0.5):
        return
    given = "none (all ocean)" if grid.mask is None else grid.mask if isinstance(grid.mask, str) else "inline"
    raise InputError(str(getattr(forcing, "path", None)), "mask", f"differs from grid.mask = {given} of the run config")


def _couple(cfg, lay: Layout, world, initial_state, forcing_source, paths, restart, grid, physics, model_factory,
            corrector, command, config_text, stats) -> None:
    forcing = open_forcing(forcing_source)
    for s in cfg.start_indices:
        forcing.check_window(s, cfg.steps)
    if isinstance(initial_state, StateFile) and restart is None:
        initial_state = initial_state.window_states([forcing.time(s) for s in cfg.start_indices])
    grid_shape = (grid.ny, grid.nx) if grid is not None else None
    preflight_inputs(forcing, cfg, grid_shape, initial_state if restart is None else None)
    rstate = read_run_restart(restart, cfg, corrector)
    first = rstate.step if rstate is not None else 0
    m = cfg.members

    # ---- physics side: one model per slot, started from the window state or the restart
    models, hello, state_names = [], None, []
    if lay.role in ("physics", "both"):
        check_grid_mask(grid, forcing)
        factory = _factory(cfg, grid, physics, model_factory)
        states = None if rstate is not None else window_states(initial_state, cfg.start_indices, shape=grid_shape)
        models = _member_models(lay.my_slots, m, factory, states, rstate)
        probe = models[0] if models else factory()
        hello = model_hello(probe, grid, lay.my_slots, lay.n_slots, cfg.steps, first)
        state_names = list(probe.get_state().data_vars)

    def forcing_pair(slot, step):
        return forcing.pair(cfg.start_indices[slot // m] + step)

    def physics_cycle(link, perturbs: bool, restart_interval: int, n_steps: int) -> Timings:
        cycle = PhysicsCycle(models, lay.my_slots, m, link.variables, state_names, forcing_pair, link)
        return cycle.run(first, n_steps, rstate is None, perturbs, restart_interval)

    if lay.role == "physics":
        client = PhysicsClient(lay, cfg.timeouts.handshake, cfg.timeouts.step)
        reply = client.hello(hello)
        timings = physics_cycle(client, reply.perturbs, reply.restart_interval, reply.n_steps)
        if stats is not None:
            stats.update(timings=timings, layout=lay)
        return
    own_model = model_factory is not None or cfg.model is not None
    serve_ranks(cfg, lay, forcing, rstate, corrector, paths, command, config_text, stats, local_hello=hello,
                run_local=lambda link, perturbs, interval: physics_cycle(link, perturbs, interval, cfg.steps),
                coarse_physics=None if own_model else (physics or CoarsePhysicsConfig()).model_dump(mode="json"))

