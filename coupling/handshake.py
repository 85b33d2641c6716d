"""The start-up handshake of a coupled run: every physics rank describes its model (grid, units, state variables),
the ML ranks check that all descriptions agree with each other and with the corrector, and answer with the reference
description and the variables to exchange. Pickled messages with deadlines (coupling.transport); runs once.
"""
from __future__ import annotations

from typing import Sequence

from icecorr.base.errors import InputError
from .layout import Layout
from .member_fields import hidden_state
from .transport import TAG_HELLO, TAG_REPLY, recv_object, send_object


class HandshakeError(RuntimeError):
    """Physics and ML ranks disagree on variables, units or grid."""


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


def describe_model(model, grid, rank: int) -> dict:
    """`model_description` of a physics rank's model plus the CF attributes of its state variables (`attrs`), the
    size of its hidden restart state (`n_extras`) and the rank. The grid is `grid` (a GridConfig) if given, else the
    model state's shape and `model.grid.dx` (1 m if the model has no grid)."""
    st = model.get_state()
    shape = next(iter(st.data_vars.values())).shape
    if grid is not None:
        shape, dx = (grid.ny, grid.nx), float(grid.dx)
    else:
        g = getattr(model, "grid", None)
        dx = float(g.dx) if g is not None and hasattr(g, "dx") else 1.0
    desc = model_description(shape, dx, {k: st[k].attrs.get("units", "") for k in st.data_vars},
                             list(st.data_vars))
    desc["attrs"] = {k: dict(st[k].attrs) for k in st.data_vars}
    desc["n_extras"] = int(hidden_state(model).size)
    desc["rank"] = rank
    return desc


def _check_fits(descs: dict[int, dict], reference: dict, corrector) -> None:
    """Every physics rank's description against the reference and the corrector; a checkpoint that does not fit
    the run's model is a user input error naming the checkpoint (InputError), anything else a HandshakeError."""
    cgrid = corrector.grid
    cshape = (int(cgrid["ny"]), int(cgrid["nx"])) if "ny" in cgrid and "nx" in cgrid else None
    for p, d in descs.items():
        try:
            check_description(d, reference, corrector.variables, getattr(corrector, "variables_units", {}),
                              cshape, f"physics rank {p}")
        except HandshakeError as exc:
            text = str(exc)
            if getattr(corrector, "source", None) is None or not ("checkpoint" in text or "corrector" in text):
                raise
            raise InputError(str(corrector.source), "grid" if "grid" in text else "variables",
                             f"does not fit this run: {text}") from None


def handshake(lay: Layout, desc: dict | None, corrector, timeout: float) -> tuple[dict, list[str]]:
    """(reference description, variables the corrector corrects), the same on every rank of the run.

    Physics ranks send their `desc` (`describe_model`) to every ML rank and wait for the reply of the ML rank that
    serves them. ML ranks receive every physics rank's description, check them (`check_description`) against the
    lowest rank's and against `corrector`, and reply to the physics ranks they serve. One process (role "both")
    checks its own description. Every wait ends after `timeout` s (PeerTimeout).
    """
    if lay.role == "physics":
        for ml in lay.ml_ranks:
            send_object(lay.comm, desc, ml, TAG_HELLO, timeout, "handshake")
        reply = recv_object(lay.comm, lay.ml_of[lay.rank], TAG_REPLY, timeout, "handshake reply")
        return reply["reference"], reply["variables"]
    if lay.role == "ml":
        descs = {p: recv_object(lay.comm, p, TAG_HELLO, timeout, "handshake") for p in lay.physics_ranks}
    else:
        descs = {0: desc}
    reference = descs[min(descs)]
    _check_fits(descs, reference, corrector)
    if lay.role == "ml":
        # physics ranks without slots wait for a reply too
        for p in lay.served_by(lay.rank) + [p for p in lay.physics_ranks if not len(lay.slots_of[p])
                                             and lay.ml_of[p] == lay.rank]:
            send_object(lay.comm, {"reference": reference, "variables": list(corrector.variables)}, p,
                        TAG_REPLY, timeout, "handshake reply")
    return reference, list(corrector.variables)
