"""The ML side of a coupled run, for `icecorr serve` (ML ranks only, any physics ranks that speak the protocol) and
for `icecorr couple` (its ML ranks, or the one process): corrector, handshake, output files, the ML cycle.

    run_serve(cfg, forcing_source, out_path, restart=None, comm=WORLD, corrector=None, …) -> list[Path]

Grid, units and the restart state's variables come from the hellos; members, steps, windows (start_indices), seed,
checkpoint, output and restarts from `cfg` (the `couple` section of the run config).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from icecorr.base.errors import InputError
from icecorr.base.mpi import resolve_comm
from .checks import check_coarse_physics, check_corrector_units, check_mask
from .config import CoupleConfig
from .coupler import LocalLink, Timings
from .ensemble import EnsembleCorrection, check_mode, load_corrector, make_perturbation, with_sampler
from .ensemble_output import EnsembleOutput, global_attrs, output_paths, table_attrs
from .forcing import open_forcing
from .handshake import HandshakeError, ServerTerms, check_hellos
from .layout import WORLD, Layout
from .ml_cycle import MLCycle
from .restart import check_continuation, check_same_checkpoint, read_restart
from .server import MLServer
from .transport import abort_on_error


def read_run_restart(restart, cfg: CoupleConfig, corrector):
    """The restart state a run continues from (None without `restart`), checked against the run and checkpoint."""
    if restart is None:
        return None
    rstate = read_restart(restart)
    check_continuation(restart, rstate, "couple", cfg.start_indices, cfg.members, cfg.seed)
    check_same_checkpoint(restart, rstate, cfg.checkpoint, corrector)
    if rstate.step > cfg.steps:
        raise InputError(str(restart), "step", f"restart is at step {rstate.step}, beyond n_steps={cfg.steps}")
    return rstate


def server_terms(cfg: CoupleConfig, corrector, first_step: int, ml_of: dict[int, int]) -> ServerTerms:
    """The ML side's terms of the handshake: the corrector's variables, units and grid, the run's slots and steps."""
    cgrid = getattr(corrector, "grid", None) or {}
    return ServerTerms(variables=list(corrector.variables), units=dict(getattr(corrector, "variables_units", {})),
                       total_slots=len(cfg.start_indices) * cfg.members, n_steps=cfg.steps, first_step=first_step,
                       restart_interval=cfg.restart_interval, ml_of=ml_of,
                       grid=(int(cgrid["ny"]), int(cgrid["nx"])) if "ny" in cgrid and "nx" in cgrid else None)


def check_local_hello(hello, terms: ServerTerms, corrector):
    """One process: the checks the server makes, on this process's own hello. A checkpoint that does not fit the
    model is a user input error naming the checkpoint (InputError), anything else a HandshakeError."""
    try:
        return check_hellos({0: hello}, terms)
    except HandshakeError as exc:
        text = str(exc)
        if getattr(corrector, "source", None) is None or not ("checkpoint" in text or "corrector" in text):
            raise
        raise InputError(str(corrector.source), "grid" if "grid" in text else "variables",
                         f"does not fit this run: {text}") from None


def serve_ranks(cfg: CoupleConfig, lay: Layout, forcing, rstate, corrector, paths, command, config_text,
                stats: dict | None, verb: str = "couple", local_hello=None,
                run_local: Callable[[LocalLink, bool, int], Timings] | None = None,
                coarse_physics: Mapping | None = None) -> None:
    """The ML side on an ML rank (`lay.role` 'ml': the protocol with the physics ranks) or in one process (role
    'both': `local_hello` is the process's own hello, `run_local(link, perturbs, restart_interval)` runs its
    physics side over the LocalLink). `coarse_physics`: the built-in coarse model's physics fields the physics
    ranks run (None: a model of your own), checked against the corrector's (coupling.checks.check_coarse_physics)."""
    timeout = cfg.timeouts
    first = rstate.step if rstate is not None else 0
    timings = Timings()
    state = {}

    def make_terms(hellos):
        c = corrector
        if c is None:
            h = hellos[min(hellos)]
            c = load_corrector(cfg.checkpoint, "residual", (h.ny, h.nx))
        check_mode(c, "residual", f"icecorr {verb}")
        c = with_sampler(c, cfg.sampler)
        check_corrector_units(c)  # the checks of every verb (correct, emulate): coupling.checks
        check_coarse_physics(c, coarse_physics)
        check_mask(getattr(forcing, "path", None), forcing.mask, c)
        state["corrector"] = c
        return server_terms(cfg, c, first, lay.ml_of), cfg.initial_perturbation > 0, cfg.restart_interval

    server = None
    if lay.role == "ml":
        server = MLServer(lay, timeout.handshake, timeout.step, verb)
        agreed = server.handshake(make_terms)
    else:
        terms, _, _ = make_terms({0: local_hello})
        agreed = check_local_hello(local_hello, terms, state["corrector"])
        lay.learn(agreed.slots_of, agreed.tiles, terms.total_slots)
    corrector = state["corrector"]
    variables, m = agreed.variables, cfg.members

    output = None   # files only once every hello was accepted
    if lay.rank == lay.writer:
        attrs = {v: {**table_attrs(v, {}), "units": agreed.state_units.get(v, table_attrs(v, {}).get("units", ""))}
                 for v in variables}
        output = EnsembleOutput(cfg, paths, variables, attrs, agreed.grid, agreed.dx, forcing,
                                global_attrs(verb, cfg, corrector, command, config_text), "couple", rstate,
                                agreed.state_names, agreed.state_units)
    correct = EnsembleCorrection(corrector, forcing, cfg.start_indices, m, cfg.seed, cfg.sampler_steps)
    perturb = make_perturbation(cfg.initial_perturbation, cfg.seed, cfg.start_indices, m, variables, forcing.mask)
    ml = MLCycle(lay, server, variables, agreed.grid, m, len(agreed.state_names), agreed.n_extras,
                 correct=correct, perturb=perturb, on_record=output.record if output else None,
                 on_restart=output.restart if output else None, restart_interval=cfg.restart_interval,
                 timeout=timeout.step, timings=timings)
    status = "failed"
    try:
        if server is not None:
            ml.run(first, cfg.steps, initial_exchange=rstate is None)
        else:
            run_local(LocalLink(ml), perturb is not None, cfg.restart_interval)
        status = "complete"
    finally:
        if output is not None:
            output.close(status)
    if stats is not None:
        stats.update(timings=timings, layout=lay, bounds_counts=dict(correct.bounds_counts),
                     header_waits=list(server.header_waits) if server is not None else [])
        if output is not None:
            stats["last_restart"] = output.last_restart


def run_serve(cfg: CoupleConfig, forcing_source, out_path: str | Path | None = None,
              restart: str | Path | None = None, comm=WORLD, *, corrector=None, command: str | None = None,
              config_text: str | None = None, stats: dict | None = None) -> list[Path]:
    """`icecorr serve`: this rank is an ML rank of an MPMD launch with physics ranks that speak the protocol;
    returns the trajectory file of each window (written by the first ML rank)."""
    world = resolve_comm(comm)
    paths = output_paths(Path(out_path if out_path is not None else cfg.output), cfg.start_indices)
    rank = world.Get_rank() if world is not None else 0
    if world is None or world.Get_size() == 1:
        raise InputError(None, "ranks", "icecorr serve runs the ML side of an MPMD launch "
                                        "(mpiexec -n P ./model … : -n 1 icecorr serve CONFIG): no physics rank here")
    with abort_on_error("serve", rank, "ml", world):
        lay = Layout.build(world, None, cfg.ml_ranks, "ml")
        try:
            forcing = open_forcing(forcing_source)
            for s in cfg.start_indices:
                forcing.check_window(s, cfg.steps)
            rstate = read_run_restart(restart, cfg, corrector)
            serve_ranks(cfg, lay, forcing, rstate, corrector, paths, command, config_text, stats, verb="serve")
        finally:
            lay.free()
    return paths
