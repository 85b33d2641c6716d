"""Physical bounds always hold (property test); C-grid walls; per-member seeds."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from corrector.bounds import apply_bounds, zero_walls
from corrector.seeding import member_seeds

field = arrays(np.float64, (3, 4, 5), elements=st.floats(-5, 5, allow_nan=False, width=64))


@settings(max_examples=60, deadline=None)
@given(sic=field, sit=field, snt=field, damage=field, siu=field)
def test_bounds_always_hold(sic, sit, snt, damage, siu):
    # exact zeros are an edge case worth hitting often
    sic = np.where(np.abs(sic) < 1, 0.0, sic)
    inputs = {"sic": sic, "sit": sit, "snt": snt, "damage": damage, "siu": siu}
    before = {k: v.copy() for k, v in inputs.items()}
    out, counts = apply_bounds(inputs)
    assert np.all((out["sic"] >= 0) & (out["sic"] <= 1))
    assert np.all(out["sit"] >= 0) and np.all(out["snt"] >= 0)
    assert np.all((out["damage"] >= 0) & (out["damage"] <= 1))
    no_ice = out["sic"] == 0
    assert np.all(out["sit"][no_ice] == 0) and np.all(out["snt"][no_ice] == 0)
    assert np.all(out["sic"][out["sit"] == 0] == 0)  # no area without volume
    # east-face velocities: 0 where neither neighbour has ice (one neighbour on the last column), else untouched
    east_neighbour = np.concatenate([no_ice[..., 1:], np.ones_like(no_ice[..., :1])], axis=-1)
    free = no_ice & east_neighbour
    assert np.all(out["siu"][free] == 0) and np.array_equal(out["siu"][~free], siu[~free])
    assert counts["sic"] == np.count_nonzero((sic < 0) | (sic > 1))
    # values already in bounds (with ice volume) are unchanged
    ok = (sic > 0) & (sic <= 1) & (sit > 0)
    assert np.array_equal(out["sic"][ok], sic[ok])
    # inputs not modified, and no output shares memory with an input (a later in-place edit would reach it)
    for k, v in inputs.items():
        assert np.array_equal(v, before[k]), k
        assert not any(np.shares_memory(out[j], v) for j in out), k


def test_bounds_reject_nan():
    with pytest.raises(ValueError, match="field 'sit'"):
        apply_bounds({"sic": np.ones(3), "sit": np.array([1.0, np.nan, 0.0])})


def test_zero_walls_and_land_faces():
    u = np.ones((2, 4, 5))
    v = np.ones((2, 4, 5))
    mask = np.ones((4, 5))
    mask[1, 2] = 0
    out, counts = zero_walls({"siu": u, "siv": v}, mask)
    assert np.all(out["siu"][..., -1] == 0) and np.all(out["siv"][..., -1, :] == 0)
    # east face of the land cell and of its west neighbour, north face of the land cell and of its south neighbour
    assert np.all(out["siu"][:, 1, 1:3] == 0) and np.all(out["siv"][:, 0:2, 2] == 0)
    assert out["siu"][0, 0, 0] == 1 and out["siv"][0, 2, 2] == 1
    assert counts["siu_walls"] == 2 * (4 + 2)


def test_member_seeds_prefix_stable_and_distinct():
    s4 = member_seeds(7, 3, 2, 4)
    s16 = member_seeds(7, 3, 2, 16)
    assert s4.dtype == np.int64 and s4.shape == (4,) and np.all(s16 >= 0)
    assert np.array_equal(s16[:4], s4)
    assert len(set(s16.tolist())) == 16
    assert not np.array_equal(member_seeds(7, 3, 3, 4), s4)  # next step
    assert not np.array_equal(member_seeds(7, 4, 2, 4), s4)  # other start
    assert not np.array_equal(member_seeds(8, 3, 2, 4), s4)  # other base seed
    batch = member_seeds(7, np.array([3, 4]), 2, 4)
    assert batch.shape == (2, 4) and np.array_equal(batch[0], s4)
    with pytest.raises(ValueError):
        member_seeds(-1, 0, 0, 2)
