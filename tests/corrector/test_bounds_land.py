"""The NumPy bounds apply the land mask to the ice as the torch bounds do: no sic, sit, snt on land."""
from __future__ import annotations

import numpy as np
import torch

from corrector.bounds import TorchBounds, apply_bounds, zero_walls


def test_zero_walls_removes_ice_on_land_and_counts_it():
    mask = np.ones((5, 6))
    mask[1:3, 2:4] = 0
    fields = {"sic": np.full((2, 5, 6), 0.8), "sit": np.full((2, 5, 6), 1.5), "snt": np.full((2, 5, 6), 0.1),
              "tos": np.ones((2, 5, 6))}
    out, counts = zero_walls(fields, mask)
    for name in ("sic", "sit", "snt"):
        assert np.all(out[name][:, mask == 0] == 0.0) and np.all(out[name][:, mask > 0] == fields[name][:, mask > 0])
        assert counts[f"{name}_land"] == 2 * 4
    np.testing.assert_array_equal(out["tos"], fields["tos"])   # not ice: untouched
    _, none = zero_walls(fields)                              # no mask: nothing is land
    assert "sic_land" not in none


def test_numpy_and_torch_bounds_agree_with_ice_on_land():
    rng = np.random.default_rng(3)
    n = 10
    mask = np.ones((n, n))
    mask[3:6, 4:8] = 0
    names = ["sic", "sit", "snt", "siu", "siv"]
    x = np.abs(rng.normal(size=(5, n, n))) * np.array([0.8, 1.0, 0.2, 0.1, 0.1])[:, None, None]  # ice on land too
    got = TorchBounds(names, mask, n, n)(torch.as_tensor(x)).numpy()
    ref, _ = zero_walls(dict(zip(names, x)), mask)
    ref, _ = apply_bounds(ref)
    np.testing.assert_array_equal(got, np.stack([ref[v] for v in names]))
    assert np.all(got[:3, mask == 0] == 0.0)
