"""Fields of ensemble members: reading them from a model, handing corrected ones back, the hidden state an exact
restart needs, and the finiteness check of the slot arrays (slots, n_vars, ny, nx) a coupled run exchanges.

Models follow the bridge API of docs/design.md (`get_state`, `set_state`, `state_views`, `step`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


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


def check_members_finite(what: str, arr: np.ndarray, names: Sequence[str], slots: range, members: int) -> None:
    """Raise FloatingPointError naming the window, member and field of the first NaN/inf in `arr`, the fields of
    ensemble slots `slots` (len(slots), len(names), ny, nx) about to be exchanged or written. (File contents are
    checked by `coupling.checks.check_file_values`.)"""
    ok = np.isfinite(arr)
    if ok.all():
        return
    bad = np.argwhere(~ok.reshape(arr.shape[0], len(names), -1).all(axis=-1))[0]
    slot = slots[int(bad[0])]
    raise FloatingPointError(f"{what}: non-finite values in '{names[int(bad[1])]}' of window {slot // members}, "
                             f"member {slot % members}")
