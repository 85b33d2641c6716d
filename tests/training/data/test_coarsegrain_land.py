"""Coarse-graining with land: the coarse mask rule and fields that are 0 on coarse land."""
from __future__ import annotations

import numpy as np

from fortran_stub.config import GridConfig
from training.data.coarsegrain import coarse_ocean_mask, coarsen_state


def test_coarse_mask_rule_is_at_least_half_ocean():
    fine = np.ones((4, 6))
    fine[0:2, 0:2] = [[0, 0], [0, 1]]      # 1 of 4 ocean -> land
    fine[0:2, 2:4] = [[0, 0], [1, 1]]      # 2 of 4 ocean -> ocean
    fine[2:4, 4:6] = 0                     # all land -> land
    np.testing.assert_array_equal(coarse_ocean_mask(fine, 2), [[0, 1, 1], [1, 1, 0]])
    coarse = np.ones((4, 5))
    coarse[0, :2] = coarse[3, 4] = 0
    grid = GridConfig(nx=5, ny=4, mask=coarse)
    np.testing.assert_array_equal(coarse_ocean_mask(grid.refined(4).ocean_mask(), 4), grid.ocean_mask())


def test_coarse_grained_fields_are_zero_on_coarse_land():
    rng = np.random.default_rng(0)
    r, ny, nx = 2, 8, 8
    fine_mask = np.ones((ny, nx))
    fine_mask[0:2, 0:2] = 0                # a whole coarse cell of land
    fine_mask[4, 4] = 0                    # one fine land cell in a coarse ocean cell
    ocean = fine_mask > 0
    state = {"sic": rng.uniform(0.5, 1, (ny, nx)) * ocean, "sivol": rng.uniform(0.5, 2, (ny, nx)) * ocean,
             "siu": rng.normal(size=(ny, nx)), "siv": rng.normal(size=(ny, nx)), "tos": rng.normal(size=(ny, nx)),
             "damage": rng.uniform(0.2, 1, (ny, nx))}
    plain = coarsen_state(state, r)
    out = coarsen_state(state, r, mask=fine_mask)
    coarse = coarse_ocean_mask(fine_mask, r)
    assert coarse[0, 0] == 0 and coarse[2, 2] == 1
    for name in ("sic", "sivol", "sit", "tos", "damage"):
        assert out[name][0, 0] == 0.0, name
        np.testing.assert_array_equal(out[name][coarse > 0], plain[name][coarse > 0])
    assert out["siu"][0, 0] == 0.0 and out["siv"][0, 0] == 0.0      # faces of the coarse land cell
    assert out["siu"][1, 0] == plain["siu"][1, 0]
    # no fine ice in the coarse land cell: the ice volume is conserved
    assert abs(out["sivol"].sum() * r * r - state["sivol"].sum()) < 1e-12 * state["sivol"].sum()
