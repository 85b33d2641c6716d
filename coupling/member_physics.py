"""Per-member parameters of the built-in coarse model (`couple.physics_perturbation`): a perturbed-parameter
ensemble, the model error of each member constant over its window.

The corrector's noise is drawn afresh every 12 h and the physics damps it, whereas the coarse model's error against
the reference comes from persistent causes (its rheology, drag, strength); members that differ in those parameters
carry spread with that time structure (Juricke et al. 2013, stochastic ice strength in an ocean–sea-ice model).
A scalar P* makes a whole member weaker or stronger, so a weak member yields and drifts where the reference's ice is
at rest; `member_strength_field` gives each member weak and strong patches instead (P* as a field).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy.ndimage import gaussian_filter

from fortran_stub.config import CoarsePhysicsConfig, physics_parameter

PHYSICS_STREAM = 0x9A7A  # extra SeedSequence word: parameter draws never share a stream with the sampler or perturbation
STRENGTH_STREAM = 0x57F1  # the same for the strength fields


def scaled_physics(physics: CoarsePhysicsConfig | None, factors: Mapping[str, float]) -> CoarsePhysicsConfig:
    """`physics` (None = defaults) with each real parameter in `factors` multiplied by its factor; a name is a
    parameter of the physics section or, dotted, of one of its sections ("thermo.k_snow")."""
    base = physics if physics is not None else CoarsePhysicsConfig()
    values = base.model_dump()
    for name, factor in factors.items():
        sections, key = physics_parameter(name)
        section = values
        for part in sections:
            section = section[part]
        section[key] = float(section[key] * factor)
    return base.model_validate(values)


def member_physics(physics: CoarsePhysicsConfig | None, sigma: Mapping[str, float], seed: int,
                   member: int) -> CoarsePhysicsConfig | None:
    """The coarse physics of `member`: each parameter p in `sigma` as p × exp(σ z − σ²/2), z ~ N(0, 1) from
    (seed, member, parameter name), so a member's parameters depend on nothing else (not the window, rank or order
    of the names); a name "a+b" scales a and b by one factor. `physics` itself (None = defaults) without
    perturbation."""
    if not sigma:
        return physics
    factors = {}
    for name, s in sigma.items():
        z = np.random.default_rng(np.random.SeedSequence([seed, PHYSICS_STREAM, member, *name.encode()])).standard_normal()
        factors.update(dict.fromkeys(name.split("+"), np.exp(s * z - 0.5 * s * s)))
    return scaled_physics(physics, factors)


def member_strength_field(shape: tuple[int, int], dx: float, sigma: float, length_km: float, seed: int,
                          member: int) -> np.ndarray:
    """Member `member`'s factor on the ice strength, (ny, nx) = `shape` on cells of `dx` m: exp(σ g − σ²/2) with g
    white noise from (seed, member) smoothed by a Gaussian of std `length_km` (reflecting edges) and standardised
    over the grid (mean 0, std 1), so the field only moves strength between places and `sigma` is its exact
    log-std. Depends on nothing else (not the window, rank or the other members)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, STRENGTH_STREAM, member]))
    g = gaussian_filter(rng.standard_normal(shape), sigma=length_km * 1e3 / dx, mode="reflect")
    g = (g - g.mean()) / g.std()
    return np.exp(sigma * g - 0.5 * sigma * sigma)
