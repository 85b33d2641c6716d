"""Land in both Fortran models (docs/physics-land.md): no ice ever on land, closed faces at rest, exact volume
conservation with land, flow past an island and along a coastal channel, the cyclone box with an island, and the
Coriolis parameter from latitude."""
from __future__ import annotations

import numpy as np
import pytest

from fortran_stub.config import EARTH_ROTATION, CoarsePhysicsConfig, GridConfig
from fortran_stub.truth_config import TruthPhysicsConfig
from coupling.bridge import CoarseModel
from coupling.cyclone import cyclone_forcing, initial_state
from coupling.fortran_arrays import closed_faces
from coupling.truth import TruthModel
from tests.fortran_stub.test_freedrift import analytic_free_drift
from tests.helpers.physics import smooth_random, uniform_forcing


def island_and_coast(n: int) -> np.ndarray:
    """(n, n) ocean mask: a square island in the middle, a coast along the west wall with a bay, a one-cell peninsula."""
    m = np.ones((n, n))
    q = n // 4
    m[n // 2 - q // 2:n // 2 + q // 2, n // 2 - q // 2:n // 2 + q // 2] = 0.0   # island
    m[:, :2] = 0.0                                                           # west coast
    m[q:q + 2, :2] = 1.0                                                     # a bay in it
    m[3 * q, 2:q] = 0.0                                                      # peninsula
    return m


def storm(n: int, t: float, dx: float) -> dict[str, np.ndarray]:
    """The benchmark cyclone's wind times 2.5 (a storm of up to 28 m s-1 converging on the moving centre), its ocean
    gyre, and a cold, snowy atmosphere, so that thermodynamics grows new ice in the leads everywhere it may."""
    f = cyclone_forcing(GridConfig(nx=n, ny=n, dx=dx), t)
    f["uas"], f["vas"] = 2.5 * f["uas"], 2.5 * f["vas"]
    f["tas"] = np.full((n, n), 245.0)
    f["rlds"] = np.full((n, n), 170.0)
    f["huss"] = np.full((n, n), 3e-4)
    f["prsn"] = np.full((n, n), 2e-6)
    return f


def landlocked_corners(mask: np.ndarray) -> np.ndarray:
    """(ny+1, nx+1) bool: corners (south-west domain corner first) with no ocean cell among their in-domain cells."""
    ocean = np.pad(mask > 0, 1)
    return ~(ocean[:-1, :-1] | ocean[1:, :-1] | ocean[:-1, 1:] | ocean[1:, 1:])


def assert_land_empty(model, mask: np.ndarray, stresses: tuple[str, ...]) -> None:
    """Concentration, volumes, stresses exactly 0 on land (shear stress at corners without ocean); velocities
    exactly 0 on closed faces; no NaN."""
    assert np.all(model._s12.T[landlocked_corners(mask)] == 0.0)
    v = model.state_views()
    land = mask == 0
    east, north = closed_faces(mask)
    for name in ("sic", "sivol", "snvol", *stresses):
        assert np.all(v[name][land] == 0.0), name
    assert np.all(v["siu"][east] == 0.0) and np.all(v["siv"][north] == 0.0)
    for name, arr in v.items():
        assert np.all(np.isfinite(arr)), name


def _initial(n: int, rng) -> dict[str, np.ndarray]:
    return {"sic": np.clip(0.85 + 0.2 * smooth_random(n, n, rng), 0.4, 1.0),
            "sit": 1.0 + 0.4 * smooth_random(n, n, rng), "snt": np.full((n, n), 0.05)}


@pytest.mark.parametrize("which", ["coarse", "truth"])
def test_ice_never_enters_land_under_a_storm(which):
    """Ice everywhere at the start (also on land: set_state removes it), a storm pushing it against the coasts,
    thermodynamics on (a 1 degC mixed layer that the cold air cools, except on land, where nothing runs): after every 12 h step there is no ice, stress or velocity on land, and the ice moved (the
    flow reached the coasts). Without the mask the same run puts A of 0.96 (coarse) and 0.98 (truth) on these cells."""
    rng = np.random.default_rng(5)
    n, dx = (24, 16e3) if which == "coarse" else (32, 12e3)
    mask = island_and_coast(n)
    grid = GridConfig(nx=n, ny=n, dx=dx, mask=mask)
    if which == "coarse":
        model, stresses = CoarseModel(grid, CoarsePhysicsConfig(n_evp=150)), ("sig1", "sig2")
    else:
        model, stresses = TruthModel(grid, TruthPhysicsConfig(), seed=2), ("sig11", "sig22")
    model.set_state({**_initial(n, rng), "tos": np.full((n, n), 1.0)})
    assert_land_empty(model, mask, stresses)
    moved = 0.0
    for k in range(3):
        model.step(storm(n, 43200.0 * k, dx), storm(n, 43200.0 * (k + 1), dx))
        assert_land_empty(model, mask, stresses)
        v = model.state_views()
        moved = max(moved, np.abs(v["siu"]).max(), np.abs(v["siv"]).max())
    assert moved > 0.02  # m s-1: the ice really moved
    tos = model.state_views()["tos"]
    assert np.all(tos[mask == 0] == 1.0) and tos[mask > 0].max() < 0.5  # thermodynamics over the ocean only
    if which == "truth":
        assert np.all(model.state_views()["damage"][mask == 0] == 1.0)  # no damaged ice on land


@pytest.mark.parametrize("which", ["coarse", "truth"])
def test_volume_conserved_with_land_and_thermodynamics_off(which):
    """With land and thermodynamics off, transport through the open faces only conserves ice and snow volume to
    round-off (1e-12 relative; the coarse minima's removals are accounted for), and none of it reaches land."""
    rng = np.random.default_rng(7)
    n, dx = (24, 16e3) if which == "coarse" else (32, 12e3)
    mask = island_and_coast(n)
    grid = GridConfig(nx=n, ny=n, dx=dx, mask=mask)
    if which == "coarse":
        model = CoarseModel(grid, CoarsePhysicsConfig(thermo_on=False, n_evp=150))
    else:
        model = TruthModel(grid, TruthPhysicsConfig(thermo_on=False), seed=2)
    model.set_state(_initial(n, rng))
    v = model.state_views()
    worst = 0.0
    for k in range(3):
        vol, snow = v["sivol"].sum(), v["snvol"].sum()
        model.step(storm(n, 43200.0 * k, dx), storm(n, 43200.0 * (k + 1), dx))
        removed = model.last_step_info.get("minima_removed_volume", 0.0) * mask.sum()
        worst = max(worst, abs(v["sivol"].sum() + removed - vol) / vol)
        if removed == 0.0:
            worst = max(worst, abs(v["snvol"].sum() - snow) / snow)
        assert np.all(v["sivol"][mask == 0] == 0.0)
    assert worst < 1e-12


def _channel(n: int) -> np.ndarray:
    mask = np.ones((n, n))
    mask[:4, :] = 0.0
    mask[12:, :] = 0.0
    return mask


@pytest.mark.parametrize("rheology", [True, False])
def test_coastal_channel_no_slip_shear(rheology):
    """An east-west channel (ocean rows 4..11), 10 m s-1 wind along it, compact ice in its western half: no flow
    across the coasts; with VP rheology the no-slip coasts slow the rows next to them (shear along the coast, the
    fastest ice in mid-channel); in free drift the rows move alike and the shear sits at the coast only."""
    n = 16
    mask = _channel(n)
    model = CoarseModel(GridConfig(nx=n, ny=n, mask=mask),
                        CoarsePhysicsConfig(thermo_on=False, rheology_on=rheology, n_evp=200))
    ice = (np.arange(n)[None, :] < 8) * np.ones((n, 1))
    model.set_state({"sic": ice, "sit": ice * 1.0})
    f = uniform_forcing(n, n, uas=10.0)
    model.step(f, f, 3600.0)
    v = model.state_views()
    u = v["siu"][4:12, 3]  # a column of east faces across the channel
    assert np.all(v["siv"][3, :] == 0.0) and np.all(v["siv"][11, :] == 0.0)  # coast faces closed
    assert np.all(u > 0.0)
    _, shear = model.deformation()
    if rheology:
        assert u[0] < 0.6 * u.max() and u[-1] < 0.6 * u.max()
        assert u.argmax() in (3, 4)
        s12 = model._s12.T  # (ny+1, nx+1) corners; row 4 is the south coast, row 12 the north coast
        assert np.all(s12[4, 2:7] > 0) and np.all(s12[12, 2:7] < 0)  # friction of the coasts on the ice
        assert np.all(s12[:4, :] == 0) and np.all(s12[13:, :] == 0)  # no stress inside the land
    else:
        assert np.ptp(u) < 0.02 * u.max()
        assert shear[4, 3] > 100 * shear[7, 3]
    assert shear[4, 3] > 0 and shear[11, 3] > 0
    assert np.all(shear[mask == 0] == 0.0)


def test_free_drift_past_an_island():
    """Wind toward an island: the faces of the island stay at rest, no ice enters it, ice in the island's lee
    keeps drifting away, and the ice upstream piles up against its coast (A capped at 1, thicker)."""
    n = 20
    mask = np.ones((n, n))
    mask[8:12, 8:12] = 0.0
    model = CoarseModel(GridConfig(nx=n, ny=n, mask=mask),
                        CoarsePhysicsConfig(thermo_on=False, rheology_on=False, n_evp=100))
    model.set_state({"sic": np.full((n, n), 0.7), "sit": np.full((n, n), 0.5)})
    f = uniform_forcing(n, n, uas=15.0)
    for _ in range(2):
        model.step(f, f)
    v = model.state_views()
    assert np.all(v["sic"][mask == 0] == 0.0)
    sit = v["sivol"] / np.where(v["sic"] > 0, v["sic"], 1.0)
    assert sit[9, 7] > 0.6 and v["sic"][9, 7] > 0.9        # piled up west of the island
    assert v["sic"][9, 12] < 0.5                           # lee: the ice drifts away, nothing flows through
    assert v["siu"][9, 7] == 0.0 and v["siu"][9, 11] == 0.0  # faces of the island


def test_cyclone_box_with_an_island_runs():
    """The benchmark cyclone (1 h windows, 1 day) in the 512 km box with an island in its path: no NaN, no ice on
    the island, and the ice deforms around it."""
    mask = np.ones((32, 32))
    mask[18:22, 18:22] = 0.0
    grid = GridConfig(nx=32, ny=32, dx=16e3, mask=mask)
    model = CoarseModel(grid, CoarsePhysicsConfig(thermo_on=False, dt_dyn=1200.0, n_evp=200))
    model.set_state(initial_state(grid))
    for k in range(24):
        model.step(cyclone_forcing(grid, 3600.0 * k), cyclone_forcing(grid, 3600.0 * (k + 1)), 3600.0)
    assert_land_empty(model, mask, ("sig1", "sig2"))
    _, shear = model.deformation()
    assert shear.max() > 1e-7 and np.all(np.isfinite(shear))


def _latitude_grid(n: int, lat0: float, lat1: float) -> GridConfig:
    lat = np.repeat(np.linspace(lat0, lat1, n)[:, None], n, axis=1)
    return GridConfig(nx=n, ny=n, latitude=lat)


def test_constant_latitude_is_the_constant_coriolis_parameter():
    """A latitude field whose f equals the constant `coriolis` gives bit-identical results (the face average of a
    constant field is that constant)."""
    n, lat = 12, 75.0
    f = 2.0 * EARTH_ROTATION * np.sin(np.deg2rad(lat))
    phys = CoarsePhysicsConfig(coriolis=f, thermo_on=False, n_evp=100)
    runs = []
    for grid in (GridConfig(nx=n, ny=n), GridConfig(nx=n, ny=n, latitude=np.full((n, n), lat))):
        m = CoarseModel(grid, phys)
        m.set_state({"sic": np.full((n, n), 0.9), "sit": np.full((n, n), 1.0)})
        m.step(uniform_forcing(n, n, uas=10.0, vas=4.0), uniform_forcing(n, n, uas=12.0, vas=-3.0))
        runs.append({k: a.copy() for k, a in m.state_views().items()})
    for k in runs[0]:
        assert np.array_equal(runs[0][k], runs[1][k]), k


@pytest.mark.parametrize("hemisphere", [1.0, -1.0])
def test_free_drift_turning_follows_the_local_coriolis_parameter(hemisphere):
    """Free drift under a uniform wind with latitude growing along y (40 to 88 degrees): each row turns by the
    analytic angle of its own f (to the right in the north, to the left in the south), more at higher latitude."""
    n = 16
    grid = _latitude_grid(n, 40.0 * hemisphere, 88.0 * hemisphere)
    phys = CoarsePhysicsConfig(rheology_on=False, transport_on=False, thermo_on=False, n_evp=100)
    model = CoarseModel(grid, phys)
    model.set_state({"sic": np.ones((n, n)), "sit": np.full((n, n), 2.0)})
    f = uniform_forcing(n, n, uas=10.0)
    for _ in range(4):
        model.step(f, f)
    v = model.state_views()
    lat = grid.latitudes()[:, 0]
    angles = []
    for j in (4, 11):  # rows away from the walls; v at row j's north face and j-1's, u at row j
        u_mean = v["siu"][j, 5:-6].mean()
        v_mean = 0.5 * (v["siv"][j, 5:-5] + v["siv"][j - 1, 5:-5]).mean()
        angle = np.degrees(np.arctan2(v_mean, u_mean))
        local = CoarsePhysicsConfig(rheology_on=False, coriolis=2 * EARTH_ROTATION * np.sin(np.deg2rad(lat[j])))
        assert angle == pytest.approx(analytic_free_drift(local, 2.0, 10.0)[1], abs=1.5)
        angles.append(angle)
    assert hemisphere * angles[1] < hemisphere * angles[0] < 0  # more turning further poleward


def test_truth_turning_follows_the_local_coriolis_parameter():
    """The BBM truth uses the latitude's Coriolis field too: rows at 85 degrees turn further right than rows at
    45 degrees under a uniform wind; a southern grid turns left."""
    n = 16
    for sign in (1.0, -1.0):
        grid = GridConfig(nx=n, ny=n, dx=16e3, latitude=np.repeat(
            np.linspace(45.0, 85.0, n)[:, None], n, axis=1) * sign)
        m = TruthModel(grid, TruthPhysicsConfig(thermo_on=False, transport_on=False), seed=1)
        m.set_state({"sic": np.full((n, n), 0.6), "sit": np.full((n, n), 2.0)})  # loose ice: close to free drift
        f = uniform_forcing(n, n, uas=10.0)
        m.step(f, f, dt=21600.0)
        v = m.state_views()
        turn = [np.arctan2(0.5 * (v["siv"][j, 5:-5] + v["siv"][j - 1, 5:-5]).mean(), v["siu"][j, 5:-6].mean())
                for j in (4, 11)]
        assert sign * turn[1] < sign * turn[0] < 0
