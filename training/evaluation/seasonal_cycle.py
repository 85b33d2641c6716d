"""Seasonal cycle of a domain series (extent, volume, mean concentration) against the truth's: the annual harmonic
fitted by least squares over whole years, its amplitude (half the peak-to-trough range) and phase (day of its
minimum). Used by the long-run check on the box and by the Arctic report (issue 20: amplitude within 10–15 % and
phase within 10 days of the truth's)."""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

YEAR_DAYS = 365.25


def annual_harmonic(series: np.ndarray, days: np.ndarray) -> dict[str, float]:
    """Annual harmonic of `series` at times `days` (days since the run's start): {mean, amplitude, min_day} with
    min_day the day (since the start, modulo the year) of the harmonic's minimum; amplitude and min_day are NaN
    for less than a year of data (no cycle to fit)."""
    series, days = np.asarray(series, dtype=float), np.asarray(days, dtype=float)
    ok = np.isfinite(series)
    if not ok.any() or days[ok].max() - days[ok].min() < YEAR_DAYS - 1:
        return {"mean": float(np.nanmean(series)) if ok.any() else float("nan"), "amplitude": float("nan"),
                "min_day": float("nan")}
    w = 2 * np.pi * days[ok] / YEAR_DAYS
    design = np.stack([np.ones_like(w), np.cos(w), np.sin(w)], axis=1)
    (mean, a, b), *_ = np.linalg.lstsq(design, series[ok], rcond=None)
    amp = float(np.hypot(a, b))
    # a cos w + b sin w = amp cos(w − φ), φ = atan2(b, a): maximum at w = φ, minimum half a year later
    phi = float(np.arctan2(b, a))
    min_day = ((phi + np.pi) / (2 * np.pi) * YEAR_DAYS) % YEAR_DAYS
    return {"mean": float(mean), "amplitude": amp, "min_day": float(min_day)}


def phase_lag(run_day: float, truth_day: float) -> float:
    """run − truth day of the minimum, wrapped to (−half a year, +half a year] (days)."""
    d = (run_day - truth_day) % YEAR_DAYS
    return d - YEAR_DAYS if d > YEAR_DAYS / 2 else d


def compare_cycles(run: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray], keys: Iterable[str],
                   step_days: float) -> dict:
    """Per key: the run's and the truth's harmonics over their common records (`step_days` apart), the amplitude
    ratio run/truth and the phase lag (days, run later > 0)."""
    out = {}
    for k in keys:
        n = min(len(run[k]), len(truth[k]))
        days = np.arange(n) * step_days
        r, t = annual_harmonic(run[k][:n], days), annual_harmonic(truth[k][:n], days)
        out[k] = {"run": r, "truth": t, "amplitude_ratio": r["amplitude"] / max(t["amplitude"], 1e-12),
                  "phase_lag_days": phase_lag(r["min_day"], t["min_day"])}
    return out
