"""Analytic idealised cases on the box: an initial state and a forcing that are closed-form functions of the cell
centres and of time, so that a case can be evaluated on any grid (the truth's fine grid and the coarse grid alike).

    CASES[name] -> IdealisedCase        .initial(grid) -> {sic, sit, snt, siu, siv}, .forcing(grid, t) -> 9 fields
    AnalyticForcing(case, grid, start)  .truth_at(k), .time(k): what `training.data.generate.simulate_run` reads

Every case shares one cold, winter-like, spatially uniform thermodynamic forcing (`WINTER`), inside the range of
the twin's training forcing (training.data.forcing: tas −26 … −7 °C in the winter windows, MU71 radiation, no
sunlight in January): tas −20 °C, huss 90 % of saturation over ice at tas, rsds 0, rlds the MU71 climatology of
`START` (mid-January, 166 W m-2), no snowfall. The truth, the coarse model and the emulators all get it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from coupling.cyclone import cell_centres, cyclone_forcing
from coupling.cyclone import initial_state as cyclone_initial_state
from fortran_stub.config import GridConfig
from icecorr.base.errors import InputError
from icecorr.base.variables import FORCING_VARIABLES, STEP_SECONDS
from training.data.config import ForcingConfig
from training.data.forcing import T0C, mu71_radiation, saturation_specific_humidity_ice

#: date of step 0 of every case (mid-January: winter radiation; the models themselves have no calendar)
START = datetime(2001, 1, 15)
#: air temperature of every case (°C): well below freezing, inside the training winters' −26 … −7 °C
WINTER_TAS_C = -20.0
#: the wall case: wind (m s-1, towards the east wall) and its uniform compact ice (A, h in m, snow in m). The BBM
#: truth holds 1.5 m of ice against 10 m/s (0.005 m/s of elastic creep, no ridging: docs/emulator.md); 15 m/s over
#: 0.75 m breaks it: 0.25 m/s of drift, a lead at the west wall, ridges downwind
WALL_WIND = 15.0
WALL_SIC, WALL_SIT, WALL_SNT = 1.0, 0.75, 0.1
#: uniform winter pack ice of the calm case (near the median of the training states: A 1, h 1.6 m, snow 0.2 m)
PACK_SIC, PACK_SIT, PACK_SNT = 1.0, 1.5, 0.2
#: amplitude (m) of the calm case's smooth thickness undulation (something that must stay where it is)
CALM_UNDULATION = 0.3


def winter_thermodynamics() -> dict[str, float]:
    """The constant thermodynamic forcing of every case (design.md names and units): tas (K), huss (kg kg-1),
    rsds, rlds (W m-2), prsn (kg m-2 s-1), with the humidity and longwave rules of the training forcing."""
    defaults = ForcingConfig()
    tas = T0C + WINTER_TAS_C
    huss = defaults.relative_humidity * float(saturation_specific_humidity_ice(np.array(tas),
                                                                               defaults.surface_pressure))
    _, rlds = mu71_radiation(START)
    return {"tas": tas, "huss": huss, "rsds": 0.0, "rlds": rlds, "prsn": 0.0}


WINTER = winter_thermodynamics()


def _with_winter(grid: GridConfig, dynamics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All forcing variables on `grid`: `dynamics` (uas, vas, uo, vo; missing = 0) plus the winter thermodynamics."""
    shape = (grid.ny, grid.nx)
    out = {name: np.zeros(shape) for name in FORCING_VARIABLES}
    out.update({name: np.full(shape, value) for name, value in WINTER.items()})
    out.update({k: np.asarray(dynamics[k], dtype=np.float64) for k in ("uas", "vas", "uo", "vo") if k in dynamics})
    return out


def _at_rest(grid: GridConfig, sic, sit, snt) -> dict[str, np.ndarray]:
    """A state at rest (ny, nx float64 arrays) from concentration, thickness (m) and snow thickness (m)."""
    shape = (grid.ny, grid.nx)
    return {name: np.broadcast_to(value, shape).astype(np.float64) for name, value in
            (("sic", sic), ("sit", sit), ("snt", snt), ("siu", 0.0), ("siv", 0.0))}


@dataclass(frozen=True)
class IdealisedCase:
    """One analytic case: `state(grid)` the initial state at the cell centres, `dynamics(grid, t)` the wind and
    ocean current (uas, vas, uo, vo in m s-1) at time t (s since START)."""

    name: str
    description: str
    state: Callable[[GridConfig], dict[str, np.ndarray]]
    dynamics: Callable[[GridConfig, float], dict[str, np.ndarray]]

    def initial(self, grid: GridConfig) -> dict[str, np.ndarray]:
        """The initial state on `grid`: sic (1), sit, snt (m), siu, siv (m s-1), (ny, nx) float64 arrays."""
        return {k: np.array(v, dtype=np.float64) for k, v in self.state(grid).items()}

    def forcing(self, grid: GridConfig, t_seconds: float) -> dict[str, np.ndarray]:
        """All nine forcing fields on `grid` at time t (s since START), (ny, nx) float64 arrays."""
        return _with_winter(grid, self.dynamics(grid, t_seconds))


def _cyclone_state(grid: GridConfig) -> dict[str, np.ndarray]:
    s = cyclone_initial_state(grid)
    return _at_rest(grid, s["sic"], s["sit"], 0.0)


def _calm_state(grid: GridConfig) -> dict[str, np.ndarray]:
    xx, yy = cell_centres(grid)
    lx, ly = grid.nx * grid.dx, grid.ny * grid.dx
    sit = PACK_SIT + CALM_UNDULATION * np.sin(2 * np.pi * xx / lx) * np.sin(np.pi * yy / ly)
    return _at_rest(grid, PACK_SIC, sit, PACK_SNT)


CASES: dict[str, IdealisedCase] = {case.name: case for case in (
    IdealisedCase(
        "mehlmann_cyclone",
        "moving convergent cyclone over the anticyclonic ocean gyre (Mehlmann et al. 2021, coupling.cyclone): "
        "A = 1, h = 0.3 m + small sines, no snow, ice at rest; the centre reaches the north-east corner after "
        "L/(2 × 51.2 km/day) (5 days on the 512 km box) and then leaves",
        _cyclone_state, cyclone_forcing),
    IdealisedCase(
        "uniform_wind_wall",
        f"uniform {WALL_WIND:g} m/s wind towards the east wall, ocean at rest, uniform compact ice at rest "
        f"(A = {WALL_SIC:g}, h = {WALL_SIT:g} m, snow {WALL_SNT:g} m): a lead opens at the west wall, ridges downwind",
        lambda grid: _at_rest(grid, WALL_SIC, WALL_SIT, WALL_SNT),
        lambda grid, t: {"uas": np.full((grid.ny, grid.nx), WALL_WIND)}),
    IdealisedCase(
        "calm",
        f"no wind, ocean at rest, pack ice at rest (A = {PACK_SIC:g}, h = {PACK_SIT:g} ± {CALM_UNDULATION:g} m, snow "
        f"{PACK_SNT:g} m): nothing should move, only slow freezing",
        _calm_state, lambda grid, t: {}),
)}


def get_case(name: str) -> IdealisedCase:
    """The case called `name`; InputError naming `--cases` and the known names otherwise."""
    if name not in CASES:
        raise InputError(None, "--cases", f"unknown idealised case {name!r} (known: {', '.join(CASES)})")
    return CASES[name]


class AnalyticForcing:
    """A case's forcing on `grid` by 12 h step k (the interface of `training.data.forcing.SyntheticForcing` that
    the twin reads): `truth_at(k)` the nine fields at step k, `time(k)` its date."""

    def __init__(self, case: IdealisedCase, grid: GridConfig, start: datetime = START):
        self.case, self.grid, self.start = case, grid, start

    def truth_at(self, k: int) -> dict[str, np.ndarray]:
        """The forcing at step k (t = k·12 h) at the cell centres of `grid`."""
        return self.case.forcing(self.grid, k * STEP_SECONDS)

    def time(self, k: int) -> datetime:
        """The date of step k."""
        return self.start + timedelta(seconds=k * STEP_SECONDS)
