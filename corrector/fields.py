"""Named 2-D fields ⇄ channel tensors: which conditioning channels a corrector reads, how they are built from a run's
states and forcing, and how they are stacked.

Names follow the training-pair files (docs/design.md): `initial_{v}`, `forecast_{v}`, `{f}_t0`, `{f}_t1`,
`drift_steps`, `mask`. This module is their one owner: `conditioning_names` defines them; `build_conditioning`
(from a run's arrays) and `pair_file_field` (from a file's records) decode them into fields.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from icecorr.base.errors import InputError
from icecorr.base.variables import FORCING_VARIABLES, ML_VARIABLES

MASK = "mask"
#: conditioning channel: 12 h steps since the state was last the reference (`CorrectorConfig.max_drift_steps`)
DRIFT_STEPS = "drift_steps"
#: static geography channels (y, x): latitude (degrees north, a file's 2-D `lat`) and the cell centre's projection
#: coordinates (m, a file's 1-D `x`/`y` broadcast), so that a network trained on patches knows where each patch lies
LATITUDE, X_POSITION, Y_POSITION = "lat", "x_position", "y_position"
GEOGRAPHY_CHANNELS = (LATITUDE, X_POSITION, Y_POSITION)


def geography_fields(source) -> dict[str, np.ndarray]:
    """The geography channels `source` (an xarray Dataset or a mapping with `lat` (y, x), `x` (x,) and `y` (y,))
    provides, as float64 (ny, nx) arrays; those it lacks are left out."""
    out = {}
    if LATITUDE in source and np.ndim(source[LATITUDE]) == 2:
        out[LATITUDE] = np.asarray(source[LATITUDE], np.float64)
    if "x" in source and "y" in source and np.ndim(source["x"]) == 1 and np.ndim(source["y"]) == 1:
        yy, xx = np.meshgrid(np.asarray(source["y"], np.float64), np.asarray(source["x"], np.float64), indexing="ij")
        out[X_POSITION], out[Y_POSITION] = xx, yy
    return out


def _check_mode(mode: str) -> None:
    if mode not in ("residual", "emulator"):
        raise ValueError(f"mode must be 'residual' or 'emulator', got {mode!r}")


def conditioning_names(mode: str, variables: Sequence[str] = ML_VARIABLES,
                       forcing_variables: Sequence[str] = FORCING_VARIABLES, drift: bool = False) -> list[str]:
    """Conditioning channel names, in network order.

    residual: initial state, coarse forecast, forcing at t0 and t1, [drift_steps,] mask.
    emulator: initial state, forcing at t0 and t1, [drift_steps,] mask (no physics forecast exists).
    """
    _check_mode(mode)
    names = [f"initial_{v}" for v in variables]
    if mode == "residual":
        names += [f"forecast_{v}" for v in variables]
    names += [f"{f}_t0" for f in forcing_variables]
    names += [f"{f}_t1" for f in forcing_variables]
    if drift:
        names.append(DRIFT_STEPS)
    names.append(MASK)
    return names


def target_names(mode: str, variables: Sequence[str], state_variables: Sequence[str] | None = None) -> list[str]:
    """Names of the target channels, in `variables` order — the one place that decides what is predicted:
    residual mode: `residual_{v}` (reference − forecast);
    emulator mode: `next_{v}` (reference, the state at t+12 h) for v in `state_variables`
    (`CorrectorConfig.emulator_state_variables`, required in this mode), else `tendency_{v}` (reference − initial).
    `target_terms` says how each is formed from pair-file fields."""
    _check_mode(mode)
    if mode == "emulator" and state_variables is None:
        raise ValueError("emulator mode: give state_variables (CorrectorConfig.emulator_state_variables; [] = all "
                         "tendencies)")
    state_variables = state_variables or []
    if mode == "residual":
        if state_variables:
            raise ValueError(f"state_variables {list(state_variables)}: residual mode has no state targets")
        return [f"residual_{v}" for v in variables]
    unknown = [v for v in state_variables if v not in variables]
    if unknown:
        raise ValueError(f"state_variables {unknown} are not among variables {list(variables)}")
    return [f"next_{v}" if v in state_variables else f"tendency_{v}" for v in variables]


def target_terms(name: str) -> tuple[str, str | None]:
    """(plus, minus): the pair-file fields whose difference is target channel `name` (minus None: plus alone)."""
    kind, v = name.split("_", 1)
    if kind == "residual":
        return name, None
    if kind == "next":
        return f"reference_{v}", None
    if kind == "tendency":
        return f"reference_{v}", f"initial_{v}"
    raise ValueError(f"target channel {name!r}: expected residual_*, next_* or tendency_*")


def target_arrays(mode: str, variables: Sequence[str], source: Mapping[str, np.ndarray],
                  state_variables: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The target fields (physical units, see `target_names`) from a mapping that holds the training-pair
    variables. Keys are `variables`."""
    out = {}
    for v, name in zip(variables, target_names(mode, variables, state_variables)):
        plus, minus = target_terms(name)
        try:
            a = np.asarray(source[plus])
            out[v] = a - np.asarray(source[minus]) if minus else a
        except KeyError as exc:
            raise KeyError(f"target of variable '{v}' ({mode} mode) needs field {exc.args[0]!r}, which is missing; "
                           f"available: {sorted(source)}") from None
    return out


def _as_tensor(name: str, value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise ValueError(f"field '{name}': expected a numeric array, got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def drift_steps_field(steps, shape: tuple[int, int], max_steps: int | None = None, batch: int | None = None
                      ) -> np.ndarray:
    """The `drift_steps` channel (B, ny, nx), constant in space: per-item step counts `steps` (scalar or (B,);
    a scalar is repeated `batch` times), clamped at `max_steps` if given (a `Corrector` clamps at its own)."""
    s = np.atleast_1d(np.asarray(steps, dtype=np.float32))
    if batch is not None:
        s = np.broadcast_to(s, (batch,))
    if max_steps is not None:
        s = np.minimum(s, np.float32(max_steps))
    return np.ascontiguousarray(np.broadcast_to(s[:, None, None], (s.size, *shape)))


def build_conditioning(names: Sequence[str], variables: Sequence[str], initial: np.ndarray,
                       forecast: np.ndarray | None, forcing_t0: Mapping[str, np.ndarray],
                       forcing_t1: Mapping[str, np.ndarray], mask: np.ndarray | None,
                       drift_steps=0, geography: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Conditioning fields by name from (B, n_vars, ny, nx) states and (B, ny, nx) forcing; `drift_steps`
    (scalar or (B,)): 12 h steps since the states were last the reference (the corrector clamps them);
    `geography`: the static (ny, nx) geography channels (`geography_fields` of the forcing file).
    A name the inputs cannot provide raises InputError naming it."""
    ny, nx = initial.shape[-2:]
    out = {}
    for name in names:
        if name == DRIFT_STEPS:
            out[name] = drift_steps_field(drift_steps, (ny, nx), batch=initial.shape[0])
            continue
        if name.startswith("initial_") and name[8:] in variables:
            out[name] = initial[:, variables.index(name[8:])]
        elif name.startswith("forecast_") and name[9:] in variables and forecast is not None:
            out[name] = forecast[:, variables.index(name[9:])]
        elif name.endswith("_t0") and name[:-3] in forcing_t0:
            out[name] = forcing_t0[name[:-3]]
        elif name.endswith("_t1") and name[:-3] in forcing_t1:
            out[name] = forcing_t1[name[:-3]]
        elif name == MASK:
            out[name] = np.ones((ny, nx)) if mask is None else mask
        elif name in GEOGRAPHY_CHANNELS and geography and name in geography:
            out[name] = geography[name]
        else:
            raise InputError(None, name, "the checkpoint conditions on this field but the run does not provide it "
                                         f"(forcing has {sorted(forcing_t0)})")
    return out


def pair_file_field(name: str, fields: Mapping, n_records: int, shape: tuple[int, int],
                    mask: np.ndarray | None = None) -> np.ndarray | None:
    """Conditioning field `name` from the records of a pair/forecast file (`fields`: name -> (n_records, ny, nx)
    array or DataArray, e.g. an xarray Dataset). `mask`: the file's, else `mask`, else all ocean (ny, nx);
    `drift_steps`: the file's per-record counts, else 0 (forecasts started from the reference or an analysis),
    unclamped (the corrector clamps); any other name: the file's field of that name, None if it has none."""
    if name == MASK:
        return (np.asarray(fields[MASK], np.float64) if MASK in fields else
                np.ones(shape) if mask is None else mask)
    if name == DRIFT_STEPS:
        steps = np.asarray(fields[name]) if name in fields else np.zeros(n_records)
        return drift_steps_field(steps, shape)
    if name in GEOGRAPHY_CHANNELS:
        return geography_fields(fields).get(name)
    if name not in fields:
        return None
    return np.asarray(fields[name], np.float64)


def stack(names: Sequence[str], arrays: Mapping[str, "np.ndarray | torch.Tensor"],
          batch: int | None = None, dtype: torch.dtype = torch.float32,
          device: "torch.device | str | None" = None) -> torch.Tensor:
    """Stack named fields (B, ny, nx) into a (B, C, ny, nx) tensor in the order of `names`.

    `mask` (and any other field) may also be given as (ny, nx): it is broadcast over the batch.
    Raises KeyError naming a missing field, ValueError naming a field of the wrong shape.
    """
    if not names:
        raise ValueError("stack: no field names given")
    missing = [n for n in names if n not in arrays]
    if missing:
        raise KeyError(f"conditioning field(s) {missing} missing; got {sorted(arrays)}")
    tensors = {n: _as_tensor(n, arrays[n]) for n in names}
    batched = [t for t in tensors.values() if t.ndim == 3]
    if not batched and batch is None:
        raise ValueError("stack: every field is 2-D; give `batch` or at least one (B, ny, nx) field")
    ref_name = next((n for n in names if tensors[n].ndim == 3), names[0])
    ref = tensors[ref_name]
    b = ref.shape[0] if ref.ndim == 3 else batch
    ny, nx = ref.shape[-2:]
    out = []
    for n in names:
        t = tensors[n]
        if t.ndim == 2:
            t = t.unsqueeze(0).expand(b, -1, -1)
        if t.ndim != 3 or tuple(t.shape) != (b, ny, nx):
            raise ValueError(f"field '{n}': shape {tuple(tensors[n].shape)}, expected ({b}, {ny}, {nx}) like "
                             f"'{ref_name}' (or ({ny}, {nx}))")
        out.append(t.to(dtype=dtype, device=device))
    return torch.stack(out, dim=1)


def unstack(names: Sequence[str], tensor: torch.Tensor | np.ndarray, axis: int = -3) -> dict:
    """Split a channel axis back into named fields (views where possible)."""
    if tensor.shape[axis] != len(names):
        raise ValueError(f"unstack: {tensor.shape[axis]} channels on axis {axis}, {len(names)} names")
    idx = [slice(None)] * tensor.ndim
    out = {}
    for k, n in enumerate(names):
        idx[axis] = k
        out[n] = tensor[tuple(idx)]
    return out
