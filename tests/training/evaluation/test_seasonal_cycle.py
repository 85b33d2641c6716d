"""The seasonal-cycle comparison of long runs (amplitude ratio and phase lag of the annual harmonic)."""
from __future__ import annotations

import numpy as np

from training.evaluation.seasonal_cycle import YEAR_DAYS, annual_harmonic, compare_cycles, phase_lag


def _cycle(days, mean, amplitude, min_day):
    return mean - amplitude * np.cos(2 * np.pi * (days - min_day) / YEAR_DAYS)


def test_a_scaled_and_delayed_cycle_is_measured_as_such():
    days = np.arange(3 * 730) * 0.5  # 3 years of 12 h records
    rng = np.random.default_rng(0)
    truth = {"sic": _cycle(days, 0.6, 0.3, 250.0), "volume": _cycle(days, 1.2, 0.5, 280.0)}
    run = {"sic": _cycle(days, 0.55, 0.27, 262.0) + 0.01 * rng.standard_normal(days.size),
           "volume": _cycle(days, 1.0, 0.6, 270.0)}
    c = compare_cycles(run, truth, ("sic", "volume"), 0.5)
    assert abs(c["sic"]["amplitude_ratio"] - 0.9) < 0.01 and abs(c["sic"]["phase_lag_days"] - 12.0) < 1.0
    assert abs(c["volume"]["amplitude_ratio"] - 1.2) < 1e-6 and abs(c["volume"]["phase_lag_days"] + 10.0) < 1e-3
    assert abs(c["sic"]["truth"]["mean"] - 0.6) < 1e-6 and abs(c["sic"]["truth"]["min_day"] - 250.0) < 1e-3


def test_less_than_a_year_has_no_cycle_and_lags_wrap():
    days = np.arange(400) * 0.5
    h = annual_harmonic(_cycle(days, 0.5, 0.2, 100.0), days)
    assert np.isnan(h["amplitude"]) and np.isnan(h["min_day"]) and abs(h["mean"] - np.mean(_cycle(days, 0.5, 0.2, 100.0))) < 1e-12
    assert phase_lag(5.0, 360.0) == 5.0 + YEAR_DAYS - 360.0  # across the year's end: 10.25 days later, not −355
    assert phase_lag(360.0, 5.0) == -(5.0 + YEAR_DAYS - 360.0)
