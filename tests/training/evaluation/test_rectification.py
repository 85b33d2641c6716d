"""The rectification diagnostic on a constructed case whose clipping is known by hand."""
from __future__ import annotations

import numpy as np
import pytest

from corrector.bounds import apply_bounds
from corrector.inference import Corrector
from training.evaluation.rectification import ICE_STATES, RectificationProbe, rectification_terms, summarise

VARS = ["sic", "sit", "snt"]


def constructed_case():
    """One row of 3 cells (open water, thin, pack), 1 batch item, 2 members; snow 0 everywhere.

    open  (sic 0,    sit 0):   dsic −0.1 in both members → clipped to 0: sic +0.1 each.
    thin  (sic 0.5,  sit 0.2): dsit −0.3 / +0.3 → member 0 sit −0.1 → 0, and then sic 0 (no area without volume):
                               sic −0.5, sit +0.1, volume +0.05 (raw 0.5·(−0.1)).
    pack  (sic 0.95, sit 2):   dsic +0.1 / −0.1 → member 0 sic 1.05 → 1: sic −0.05, volume −0.1.
    """
    forecast = {"sic": np.array([[[0.0, 0.5, 0.95]]]), "sit": np.array([[[0.0, 0.2, 2.0]]]),
                "snt": np.zeros((1, 1, 3))}
    sample = np.zeros((1, 2, 3, 1, 3))
    sample[0, :, 0, 0, 0] = -0.1
    sample[0, :, 1, 0, 1] = [-0.3, 0.3]
    sample[0, :, 0, 0, 2] = [0.1, -0.1]
    return forecast, sample


def test_rectification_terms_match_the_hand_computed_clipping():
    forecast, sample = constructed_case()
    raw = {v: forecast[v][:, None] + sample[:, :, k] for k, v in enumerate(VARS)}
    bounded, _ = apply_bounds(raw)
    t = rectification_terms(forecast, sample, bounded, VARS)
    n = 6.0  # 1 batch item × 2 members × 3 ocean cells
    np.testing.assert_allclose(t["rectified"]["sic"], [0.2 / n, -0.5 / n, -0.05 / n], atol=1e-12)
    np.testing.assert_allclose(t["rectified"]["sit"], [0.0, 0.1 / n, 0.0], atol=1e-12)
    np.testing.assert_allclose(t["rectified"]["sivol"], [0.0, 0.05 / n, -0.1 / n], atol=1e-12)
    np.testing.assert_allclose(t["rectified"]["snvol"], 0.0, atol=1e-12)
    np.testing.assert_allclose(t["raw"]["sic"], [-0.2 / n, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(t["raw"]["sit"], 0.0, atol=1e-12)
    np.testing.assert_allclose(t["raw"]["sivol"], 0.0, atol=1e-12)   # ±0.15 and ±0.2 cancel over the members
    # raw + rectified = what reaches the model, state by state
    for q in ("sic", "sit"):
        applied = (bounded[q] - forecast[q][:, None])[0]
        assert (t["raw"][q] + t["rectified"][q]).sum() == pytest.approx(applied.sum() / n)


def test_land_cells_are_left_out_of_the_domain_mean():
    forecast, sample = constructed_case()
    raw = {v: forecast[v][:, None] + sample[:, :, k] for k, v in enumerate(VARS)}
    bounded, _ = apply_bounds(raw)
    mask = np.array([[0.0, 1.0, 1.0]])           # the open-water cell is land: its clipping does not count
    t = rectification_terms(forecast, sample, bounded, VARS, mask)
    np.testing.assert_allclose(t["rectified"]["sic"], [0.0, -0.5 / 4, -0.05 / 4], atol=1e-12)


def test_probe_records_every_apply_and_summarises_by_lead():
    forecast, sample = constructed_case()
    probe = RectificationProbe(Corrector.zero(variables=VARS))
    assert probe.variables == VARS                   # delegated
    for _ in range(3):
        out = probe.apply(forecast, sample)
    assert len(probe.records) == 3 and out["sic"].shape == (1, 2, 1, 3)
    rec = probe.records[0]
    np.testing.assert_allclose(rec["bounded_mean"]["sic"], [[(0.0 + 0.0 + 1.0) / 3, (0.0 + 0.5 + 0.85) / 3]])
    np.testing.assert_allclose(rec["raw_mean"]["sic"], [[(-0.1 + 0.5 + 1.05) / 3, (-0.1 + 0.5 + 0.85) / 3]])
    s = summarise(probe.records, [(0, 1), (1, 10)])
    assert set(s) == {"0-1", "1-3", "all"}
    got = s["all"]["rectified"]["sic"]
    assert got["all"] == pytest.approx(sum(got[k] for k in ICE_STATES)) and got["pack"] == pytest.approx(-0.05 / 6)
