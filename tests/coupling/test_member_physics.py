"""Perturbed-parameter ensembles (`couple.physics_perturbation`, `couple.strength_field`): per-member coarse physics."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from pydantic import ValidationError

from corrector.inference import Corrector
from coupling.bridge import CoarseModel
from coupling.config import CoupleConfig
from coupling.couple import run_couple
from coupling.member_physics import member_physics, member_strength_field
from fortran_stub.config import CoarsePhysicsConfig
from icecorr.base.errors import InputError
from tests.mpi_scripts import case

FORCING = case.forcing(16, 12)


def run(tmp_path, name, **cfg):
    cfg = CoupleConfig(**{"members": 3, "n_steps": 3, "output_options": {"precision": "float64"}, **cfg})
    return xr.load_dataset(run_couple(cfg, case.initial_state(), FORCING, tmp_path / f"{name}.nc", comm=None,
                                      grid=case.grid(), corrector=Corrector.zero(grid={"ny": 16, "nx": 16}))[0])


def test_member_parameters_are_seeded_lognormal_with_the_mean_kept():
    base = CoarsePhysicsConfig()
    draws = np.array([member_physics(base, {"p_star": 0.3}, 0, k).p_star for k in range(4000)])
    assert draws.mean() == pytest.approx(base.p_star, rel=0.02)       # E[exp(σz − σ²/2)] = 1
    assert np.log(draws).std() == pytest.approx(0.3, rel=0.05)
    assert member_physics(base, {"p_star": 0.3}, 0, 5) == member_physics(base, {"p_star": 0.3}, 0, 5)
    assert member_physics(base, {"p_star": 0.3}, 1, 5) != member_physics(base, {"p_star": 0.3}, 0, 5)
    # a parameter's draw does not depend on which others are perturbed beside it
    both = member_physics(base, {"c_air": 0.1, "p_star": 0.3}, 0, 5)
    assert both.p_star == member_physics(base, {"p_star": 0.3}, 0, 5).p_star and both.c_air != base.c_air
    assert member_physics(base, {}, 0, 5) is base
    # a parameter of a nested section, by its dotted name; the rest of the section kept
    snow = member_physics(base, {"thermo.k_snow": 0.3, "p_star": 0.3}, 0, 5)
    assert snow.thermo.k_snow != base.thermo.k_snow and snow.thermo.k_ice == base.thermo.k_ice
    assert snow.p_star == member_physics(base, {"p_star": 0.3}, 0, 5).p_star
    # parameters joined by '+' share one factor: P* and Δ_min together keep the viscous limit ζ_max = P/(2Δ_min)
    tied = [member_physics(base, {"p_star+delta_min": 0.3}, 0, k) for k in range(8)]
    assert len({t.p_star for t in tied}) == 8
    for t in tied:
        assert t.p_star / t.delta_min == pytest.approx(base.p_star / base.delta_min, rel=1e-12)


def test_strength_fields_are_seeded_standardised_and_correlated():
    field = member_strength_field((40, 48), 16e3, 0.5, 48.0, 0, 3)
    log = np.log(field)
    assert log.shape == (40, 48)
    assert log.mean() == pytest.approx(-0.125, abs=1e-12) and log.std() == pytest.approx(0.5, rel=1e-12)
    assert np.array_equal(field, member_strength_field((40, 48), 16e3, 0.5, 48.0, 0, 3))
    assert not np.array_equal(field, member_strength_field((40, 48), 16e3, 0.5, 48.0, 0, 4))
    assert not np.array_equal(field, member_strength_field((40, 48), 16e3, 0.5, 48.0, 1, 3))

    def correlation(length_km, lag):
        """Pooled over members: the log-field's correlation between cells `lag` apart along x."""
        g = np.array([np.log(member_strength_field((40, 48), 16e3, 0.5, length_km, 0, k)) for k in range(40)])
        return np.corrcoef(g[:, :, :-lag].ravel(), g[:, :, lag:].ravel())[0, 1]

    # exp(−r²/(4ℓ²)): ℓ = 48 km = 3 cells → 0.78 at 3 cells, 0.37 at 6; a shorter ℓ decorrelates faster
    assert correlation(48.0, 3) == pytest.approx(np.exp(-0.25), abs=0.06)
    assert correlation(48.0, 6) == pytest.approx(np.exp(-1.0), abs=0.08)
    assert correlation(16.0, 3) < 0.2


def test_perturbed_members_run_their_own_physics_and_spread_apart(tmp_path):
    plain = run(tmp_path, "plain")
    siu = plain["siu"].values
    assert np.array_equal(siu[:, 0], siu[:, 1]) and np.array_equal(siu[:, 0], siu[:, 2])  # one physics, no noise
    sigma = {"p_star": 0.5, "c_air": 0.3}
    pert = run(tmp_path, "pert", physics_perturbation=sigma, seed=3)
    # member k is exactly the uncoupled coarse model with member k's parameters
    for k in range(3):
        model = CoarseModel(case.grid(), member_physics(None, sigma, 3, k))
        model.set_state(case.initial_state())
        for n in range(3):
            model.step(*FORCING.pair(n))
        np.testing.assert_array_equal(pert["siu"].values[-1, k], model.get_state()["siu"].values)
    assert float(pert["siu"].isel(time=-1).std("member").max()) > 1e-4
    # a strength field per member: again exactly the coarse model with member k's field
    spec = {"sigma": 0.6, "length_km": 64.0}
    fields = run(tmp_path, "field", strength_field=spec, seed=3)
    for k in range(3):
        grid = case.grid()
        model = CoarseModel(grid)
        model.set_strength_factor(member_strength_field((grid.ny, grid.nx), grid.dx, 0.6, 64.0, 3, k))
        model.set_state(case.initial_state())
        for n in range(3):
            model.step(*FORCING.pair(n))
        np.testing.assert_array_equal(fields["siu"].values[-1, k], model.get_state()["siu"].values)
    assert float(fields["siu"].isel(time=-1).std("member").max()) > 1e-4


def test_bad_perturbations_are_refused():
    with pytest.raises(ValidationError, match="'limiter' is not a real parameter"):
        CoupleConfig(physics_perturbation={"limiter": 0.1})
    with pytest.raises(ValidationError, match="'p_stars' is not a real parameter"):
        CoupleConfig(physics_perturbation={"p_stars": 0.1})
    for name in ("thermo.k_snows", "thermo", "grid.dx", "thermo.k_snow.x"):
        with pytest.raises(ValidationError, match=f"'{name}' is not a real parameter"):
            CoupleConfig(physics_perturbation={name: 0.1})
    CoupleConfig(physics_perturbation={"thermo.k_snow": 0.1, "p_star+delta_min": 0.1})
    with pytest.raises(ValidationError, match="'delta_mn' is not a real parameter"):
        CoupleConfig(physics_perturbation={"p_star+delta_mn": 0.1})
    with pytest.raises(ValidationError, match=r"σ = 3.0 outside \[0, 2\]"):
        CoupleConfig(physics_perturbation={"p_star": 3.0})
    for bad in ({"sigma": 0.5}, {"sigma": -0.1, "length_km": 48}, {"sigma": 0.5, "length_km": 0},
                {"sigma": 0.5, "length_km": 48, "shape": "gauss"}):
        with pytest.raises(ValidationError, match="strength_field"):
            CoupleConfig(strength_field=bad)


PERTURBATIONS = [{"physics_perturbation": {"p_star": 0.2}}, {"strength_field": {"sigma": 0.5, "length_km": 48}}]


@pytest.mark.parametrize("perturbation", PERTURBATIONS, ids=lambda p: next(iter(p)))
def test_a_model_of_your_own_is_not_silently_left_unperturbed(tmp_path, perturbation):
    cfg = CoupleConfig(members=2, n_steps=1, **perturbation)
    with pytest.raises(InputError, match=f"couple.{next(iter(perturbation))}.*a model of your own"):
        run_couple(cfg, case.initial_state(), FORCING, tmp_path / "m.nc", comm=None, grid=case.grid(),
                   model_factory=lambda: CoarseModel(case.grid()), corrector=Corrector.zero(grid={"ny": 16, "nx": 16}))


@pytest.mark.parametrize("perturbation", PERTURBATIONS, ids=lambda p: next(iter(p)))
def test_the_fortran_kit_refuses_what_its_driver_cannot_run(tmp_path, perturbation):
    from coupling.fortran_kit import write_kit

    cfg = CoupleConfig(members=2, n_steps=1, **perturbation)
    with pytest.raises(InputError, match=f"couple.{next(iter(perturbation))}.*standalone Fortran driver runs"):
        write_kit(case.grid(), CoarsePhysicsConfig(), cfg, case.initial_state(), FORCING, tmp_path / "kit")
    assert not (tmp_path / "kit").exists()
