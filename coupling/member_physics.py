"""Per-member parameters of the built-in coarse model (`couple.physics_perturbation`): a perturbed-parameter
ensemble, the model error of each member constant over its window.

The corrector's noise is drawn afresh every 12 h and the physics damps it, whereas the coarse model's error against
the reference comes from persistent causes (its rheology, drag, strength); members that differ in those parameters
carry spread with that time structure (Juricke et al. 2013, stochastic ice strength in an ocean–sea-ice model).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from fortran_stub.config import CoarsePhysicsConfig, physics_parameter

PHYSICS_STREAM = 0x9A7A  # extra SeedSequence word: parameter draws never share a stream with the sampler or perturbation


def member_physics(physics: CoarsePhysicsConfig | None, sigma: Mapping[str, float], seed: int,
                   member: int) -> CoarsePhysicsConfig | None:
    """The coarse physics of `member`: each parameter p in `sigma` as p × exp(σ z − σ²/2), z ~ N(0, 1) from
    (seed, member, parameter name), so a member's parameters depend on nothing else (not the window, rank or order
    of the names). A name is a parameter of the physics section or, dotted, of one of its sections
    ("thermo.k_snow"). `physics` itself (None = defaults) without perturbation."""
    if not sigma:
        return physics
    base = physics if physics is not None else CoarsePhysicsConfig()
    values = base.model_dump()
    for name, s in sigma.items():
        words = [seed, PHYSICS_STREAM, member, *name.encode()]
        z = np.random.default_rng(np.random.SeedSequence(words)).standard_normal()
        sections, key = physics_parameter(name)  # "thermo.k_ice": a parameter of a nested section
        section = values
        for part in sections:
            section = section[part]
        section[key] = float(section[key] * np.exp(s * z - 0.5 * s * s))
    return base.model_validate(values)
