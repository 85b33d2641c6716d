"""What a Python model implements to be coupled by `icecorr couple` (the built-in `coupling.bridge.CoarseModel` is
one implementation), how a config names one, and how a physics rank describes it in its hello.

A config names a model class as `couple.model: "package.module:Class"` (an import path) or as the name of an entry
point in the group `icecorr.models`; the run constructs one per ensemble slot as `Class(grid, **model_options)`,
`grid` a fortran_stub.config.GridConfig (nx, ny, dx in m) from the config's `grid` section.
"""
from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np

from icecorr.base.errors import InputError
from .member_fields import hidden_state
from .protocol import VARIABLE_CODES, Hello, codes_of, unit_code

ENTRY_POINT_GROUP = "icecorr.models"


@runtime_checkable
class CoupledModel(Protocol):
    """The model side of a coupled run: one object per ensemble member, arrays (ny, nx) float64, rows south →
    north, C-grid velocities cell-shaped (siu on east faces, siv on north faces); names and units of the variable
    table (icecorr.base.variables; docs/coupling-protocol.md §2 gives their codes).

    Optional, for bit-identical restarts of state that `get_state` does not show: `restart_extras() -> 1-D
    float64 array` and `set_restart_extras(array)` (coupling.member_fields.hidden_state).
    """

    grid: Any   # grid metadata: `nx`, `ny` (cells) and `dx` (m)

    def get_state(self):
        """The full model state as an xarray.Dataset of (y, x) variables, each with a CF `units` attribute (the
        units of the variable table); its variables are the restart state, in this order."""

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Set some or all state variables ((ny, nx) arrays by name); unnamed ones keep their values."""

    def step(self, forcing_t0: Mapping[str, np.ndarray], forcing_t1: Mapping[str, np.ndarray]) -> None:
        """Advance by one 12 h step with the forcing at its start and end (names and units of the table)."""

    def state_views(self) -> Mapping[str, np.ndarray]:
        """Zero-copy (ny, nx) views of state variables by name (may be empty: `get_state` is used instead)."""


def load_model_class(spec: str) -> Callable[..., Any]:
    """The class named by `spec`: "package.module:Class" (imported), else an entry point of the group
    `icecorr.models`. InputError (field couple.model) saying what was tried."""
    if ":" in spec:
        module, _, name = spec.partition(":")
        try:
            obj = importlib.import_module(module)
        except ImportError as exc:
            raise InputError(None, "couple.model", f"{spec!r}: cannot import module {module!r}: {exc}") from None
        for part in name.split("."):
            if not hasattr(obj, part):
                raise InputError(None, "couple.model", f"{spec!r}: module {module!r} has no attribute {name!r}")
            obj = getattr(obj, part)
        return obj
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
    if not found:
        raise InputError(None, "couple.model", f"{spec!r} is not 'package.module:Class' and no entry point of that "
                                               f"name is in the group {ENTRY_POINT_GROUP!r}")
    return found[0].load()


def model_factory(spec: str, grid, options: Mapping[str, Any]) -> Callable[[], Any]:
    """A factory of models `Class(grid, **options)` for the class named by `spec`; checks each model against
    CoupledModel (InputError naming what it lacks, or the options the class refuses)."""
    cls = load_model_class(spec)

    def make():
        try:
            model = cls(grid, **dict(options))
        except TypeError as exc:
            raise InputError(None, "couple.model_options", f"{spec}(grid, **{dict(options)}): {exc}") from None
        missing = [m for m in ("get_state", "set_state", "step", "state_views") if not callable(getattr(model, m,
                                                                                                      None))]
        if missing:
            raise InputError(None, "couple.model", f"{spec!r}: the model lacks {missing} (see "
                                                   f"coupling.model_protocol.CoupledModel)")
        return model

    return make


def model_hello(model, grid, slots: range, total_slots: int, n_steps: int, first_step: int) -> Hello:
    """The hello of an untiled physics rank holding `slots` of `model`'s kind: all its state variables that have
    a protocol code as the variables it can exchange, all of them as the restart state (ValueError naming one
    without a code), the grid from `grid` (nx, ny, dx) if given, else the state's shape and `model.grid.dx`
    (1 m if the model has no grid)."""
    st = model.get_state()
    names = list(st.data_vars)
    shape = next(iter(st.data_vars.values())).shape
    if grid is not None:
        (ny, nx), dx = (grid.ny, grid.nx), float(grid.dx)
    else:
        g = getattr(model, "grid", None)
        (ny, nx), dx = shape, float(g.dx) if g is not None and hasattr(g, "dx") else 1.0
    units = {k: unit_code(st[k].attrs.get("units", "")) for k in names}
    exchangeable = [k for k in names if k in VARIABLE_CODES]
    state = codes_of(names, "state variable")
    return Hello(ny=int(ny), nx=int(nx), dx=dx, variables=codes_of(exchangeable, "variable"),
                 units=tuple(units[k] for k in exchangeable), state=state, state_units=tuple(units[k] for k in names),
                 first_slot=slots.start if len(slots) else 0, n_slots=len(slots),
                 n_extras=int(hidden_state(model).size), total_slots=total_slots, n_steps=n_steps,
                 first_step=first_step)
