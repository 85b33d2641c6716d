"""The ML side's checks of the hellos of a coupled run (docs/coupling-protocol.md §4): every physics rank's hello
against the others, the corrector and the run. Pure functions on decoded hellos (coupling.protocol.Hello), so the
same checks serve `icecorr serve`, `icecorr couple` under MPI and the one-process run.

    terms = ServerTerms(...);  agreed = check_hellos(hellos, terms)   # HandshakeError naming rank and field
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .protocol import MAGIC, VERSION, VARIABLE_CODES, unit_code, unit_name, variable_name


class HandshakeError(RuntimeError):
    """Physics and ML ranks disagree on protocol, grid, variables, units, slots or tiles."""


@dataclass
class ServerTerms:
    """What the ML side brings to the handshake: its corrector, its run and the pairing of the layout."""

    variables: list[str]                       # what the corrector corrects, in its order (= the exchange order)
    units: dict[str, str]                      # the units the corrector was trained in (missing: any)
    total_slots: int
    n_steps: int
    first_step: int = 0
    restart_interval: int = 0
    grid: tuple[int, int] | None = None        # the checkpoint's (ny, nx), if it records one
    ml_of: dict[int, int] = field(default_factory=dict)   # physics rank -> ML partner


@dataclass
class Agreed:
    """What every accepted hello agrees on: the run's grid, exchange and restart contents, slots and tiles."""

    grid: tuple[int, int]
    dx: float
    variables: list[str]                       # exchanged, in exchange order
    state_names: list[str]                     # restart state variables ([] if no rank sends any)
    state_units: dict[str, str]
    n_extras: int
    slots_of: dict[int, range]
    tiles: dict[int, tuple[slice, slice]]


def _rank_checks(p: int, h, ref, ref_rank: int, state_ref, state_rank: int, terms: ServerTerms) -> list[str]:
    """Mismatches of physics rank `p`'s hello against the reference ranks' (grid: the lowest rank, restart state:
    the lowest rank that sends one) and the ML side's terms."""
    who = f"physics rank {p}"
    if h.magic != MAGIC:
        return [f"{who}: magic {h.magic} is not the icecorr coupling protocol's {MAGIC}"]
    if h.version != VERSION:
        return [f"{who}: protocol version {h.version} but the server speaks version {VERSION}"]
    out = []
    if (h.ny, h.nx) != (ref.ny, ref.nx) or abs(h.dx - ref.dx) > 1e-9 * abs(ref.dx):
        out.append(f"{who} has grid (ny, nx)=({h.ny}, {h.nx}), dx={h.dx} m but physics rank {ref_rank} has "
                   f"({ref.ny}, {ref.nx}), dx={ref.dx} m")
    if terms.grid is not None and (h.ny, h.nx) != tuple(terms.grid):
        out.append(f"{who} has grid (ny, nx)=({h.ny}, {h.nx}) but the checkpoint was trained on {tuple(terms.grid)}")
    units = dict(zip(h.variables, h.units))
    missing = [v for v in terms.variables if VARIABLE_CODES[v] not in units]
    if missing:
        out.append(f"{who} does not provide variable(s) {missing} that the corrector corrects")
    for v in terms.variables:
        code = VARIABLE_CODES[v]
        want = terms.units.get(v)
        if code in units and want is not None and units[code] != unit_code(want):
            out.append(f"{who}: variable '{v}' has units {unit_name(units[code])!r} (code {units[code]}) but the "
                       f"corrector expects {want!r}")
    if not (1 <= h.j0 <= h.j1 <= h.ny and 1 <= h.i0 <= h.i1 <= h.nx):
        out.append(f"{who}: tile rows {h.j0}..{h.j1}, columns {h.i0}..{h.i1} lie outside the grid "
                   f"({h.ny}, {h.nx})")
    if h.n_slots < 0 or h.first_slot < 0 or h.first_slot + h.n_slots > terms.total_slots:
        out.append(f"{who}: slots {h.first_slot}..{h.first_slot + h.n_slots - 1} outside the run's "
                   f"{terms.total_slots} slots")
    if h.total_slots not in (-1, terms.total_slots):
        out.append(f"{who}: {h.total_slots} slots in total but the server runs {terms.total_slots}")
    if h.n_steps not in (-1, terms.n_steps):
        out.append(f"{who}: {h.n_steps} steps but the server runs {terms.n_steps}")
    if h.first_step != terms.first_step:
        out.append(f"{who}: first step {h.first_step} but the server starts at step {terms.first_step}")
    if terms.restart_interval and h.n_slots and (h.tiled or not h.state):
        why = "is tiled" if h.tiled else "sends no state variables"
        out.append(f"{who} {why} but restart states are asked for (restart_interval={terms.restart_interval}): "
                   f"restart states come from untiled ranks only")
    mine, theirs = (h.state, h.state_units, h.n_extras), (state_ref.state, state_ref.state_units, state_ref.n_extras)
    if h.state and mine != theirs:
        out.append(f"{who} has state variables {[variable_name(c) for c in h.state]} ({h.n_extras} extras) but "
                   f"physics rank {state_rank} has {[variable_name(c) for c in state_ref.state]} "
                   f"({state_ref.n_extras} extras)")
    return out


def _coverage_checks(hellos: dict, terms: ServerTerms) -> list[str]:
    """Every slot covered exactly once by tiles of ranks paired with one ML rank."""
    ny, nx = hellos[min(hellos)].ny, hellos[min(hellos)].nx
    count = np.zeros((terms.total_slots, ny, nx), dtype=np.int32)
    server_of: dict[int, set[int]] = {}
    for p, h in hellos.items():
        if not (1 <= h.j0 <= h.j1 <= ny and 1 <= h.i0 <= h.i1 <= nx):
            continue
        rows, cols = slice(h.j0 - 1, h.j1), slice(h.i0 - 1, h.i1)
        for s in h.slots:
            if 0 <= s < terms.total_slots:
                count[s, rows, cols] += 1
                server_of.setdefault(s, set()).add(terms.ml_of.get(p, 0))
    out = []
    for s in range(terms.total_slots):
        c = count[s]
        if (c == 0).all():
            out.append(f"slot {s} is held by no physics rank")
        elif (c == 0).any():
            j, i = np.argwhere(c == 0)[0]
            out.append(f"slot {s}: the tiles leave a gap ({int((c == 0).sum())} cells, first at row {j + 1}, "
                       f"column {i + 1})")
        if (c > 1).any():
            j, i = np.argwhere(c > 1)[0]
            ranks = [p for p, h in hellos.items() if s in h.slots and h.j0 <= j + 1 <= h.j1 and h.i0 <= i + 1 <= h.i1]
            out.append(f"slot {s}: the tiles of physics ranks {ranks} overlap ({int((c > 1).sum())} cells, first at "
                       f"row {j + 1}, column {i + 1})")
        if len(server_of.get(s, ())) > 1:
            out.append(f"slot {s} is split over ML ranks {sorted(server_of[s])} (its physics ranks have different "
                       f"ML partners)")
    for m in sorted(set(terms.ml_of.values())):
        held = sorted({s for p, h in hellos.items() if terms.ml_of.get(p) == m for s in h.slots})
        if held and held != list(range(held[0], held[-1] + 1)):
            out.append(f"ML rank {m} serves slots {held} that are not contiguous")
    return out


def check_hellos(hellos: dict, terms: ServerTerms) -> Agreed:
    """The run every hello agrees on; HandshakeError naming the rank and the field of every mismatch.

    `hellos` maps physics (launch) rank -> Hello; the lowest rank's grid and state are the reference."""
    ref_rank = min(hellos)
    ref = hellos[ref_rank]
    senders = [p for p in sorted(hellos) if hellos[p].state] or [ref_rank]
    state_ref = hellos[senders[0]]
    problems = []
    for p in sorted(hellos):
        problems += _rank_checks(p, hellos[p], ref, ref_rank, state_ref, senders[0], terms)
    if not problems:
        problems = _coverage_checks(hellos, terms)
    if problems:
        raise HandshakeError("; ".join(problems))
    return Agreed(grid=(ref.ny, ref.nx), dx=ref.dx, variables=list(terms.variables),
                  state_names=[variable_name(c) for c in state_ref.state],
                  state_units={variable_name(c): unit_name(u) for c, u in zip(state_ref.state, state_ref.state_units)},
                  n_extras=state_ref.n_extras, slots_of={p: h.slots for p, h in hellos.items()},
                  tiles={p: h.tile for p, h in hellos.items()})
