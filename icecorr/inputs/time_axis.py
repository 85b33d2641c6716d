"""The time axis of the user's state and forcing files: state records more often than 12-hourly (6-hourly neXtSIM
moorings, hourly analyses) resampled to the model's 12 h step, and the output interval of accumulated fluxes.

Resampling (`prepare.time_resample`): the 12 h records are those at 00 and 12 UTC. `snapshot` takes the record at
that time; `mean` the time mean over [t − 6 h, t + 6 h] (trapezoidal over the records, so both end records count
half), which needs both ends in the files. The files' step must be regular and divide 12 h (mean: 6 h); irregular or
coarser spacing is an InputError naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from icecorr.base.errors import InputError
from icecorr.base.variables import STEP_SECONDS

STEP = np.timedelta64(int(STEP_SECONDS), "s")
HALF = np.timedelta64(int(STEP_SECONDS) // 2, "s")

#: per 12 h record: the file records (global indices) it is made of and their weights (summing to 1)
Records = list[tuple[tuple[int, float], ...]]


def _hours(td: np.timedelta64) -> str:
    return f"{td / np.timedelta64(1, 'h'):g} h"


def resampled_times(times: np.ndarray, files: list[Path], counts: list[int], tdim: str, mode: str,
                    key: str = "prepare.time_resample") -> tuple[np.ndarray, Records | None]:
    """(12-hourly times, records) of the concatenated state `times` (datetime64[ns], increasing), `counts` records
    per file; records is None when the files are 12-hourly already. `mode`: 'snapshot' or 'mean' (the config
    `key`). InputError naming the file and `tdim` for irregular or coarser-than-12 h spacing."""
    owner = np.repeat(np.arange(len(files)), counts)
    if times.size < 2:
        return times, None
    step = np.diff(times)
    first = step[0]
    bad = np.nonzero(step != first)[0] if first <= STEP and STEP % first == np.timedelta64(0, "s") \
        else np.array([0])
    if bad.size:
        i = int(bad[0])
        raise InputError(str(files[owner[i + 1]]), tdim,
                         f"time spacing must be 12 h, or a regular step that divides 12 h (6 h, 3 h, 1 h: resampled "
                         f"by {key}): {np.datetime_as_string(times[i], unit='m')} -> "
                         f"{np.datetime_as_string(times[i + 1], unit='m')} (record {i} -> {i + 1}, "
                         f"{_hours(step[i])}); files must be given in time order, without gaps or overlaps")
    if first == STEP:
        return times, None
    if mode == "mean" and HALF % first != np.timedelta64(0, "s"):
        raise InputError(str(files[0]), tdim, f"a {_hours(first)} step does not divide 6 h: the 12 h mean needs "
                         f"records at t ± 6 h; set {key}: snapshot")
    day = times.astype("datetime64[D]").astype(times.dtype)
    at_12h = np.nonzero((times - day) % STEP == np.timedelta64(0, "s"))[0]
    n = int(STEP // first)
    if mode == "mean":
        at_12h = at_12h[(at_12h >= n // 2) & (at_12h + n // 2 < times.size)]
        weights = np.ones(n + 1) / n
        weights[[0, -1]] = 0.5 / n
        records = [tuple((int(i - n // 2 + j), float(w)) for j, w in enumerate(weights)) for i in at_12h]
    else:
        records = [((int(i), 1.0),) for i in at_12h]
    if len(records) < 2:
        raise InputError(str(files[0]), tdim, f"fewer than two 12 h records at 00/12 UTC ({mode}) in "
                         f"{np.datetime_as_string(times[0], unit='m')} .. {np.datetime_as_string(times[-1], unit='m')}")
    return times[at_12h], records


def output_intervals(times: np.ndarray) -> np.ndarray:
    """Seconds (float64) of the output interval ending at each record of `times`: the time since the previous
    record; the first record's interval is taken equal to the second's (regular output)."""
    if times.size < 2:
        raise ValueError("an accumulated field needs at least two records to know its output interval")
    seconds = np.diff(times).astype("timedelta64[ns]").astype(np.float64) / 1e9
    return np.concatenate([seconds[:1], seconds])
