"""Gap patterns of synthetic observations: satellite swaths, drift only inside the ice pack, whole missing days.

Each "instrument" has its own gaps, shared by its variables. Gaps are a pure function of (seed, instrument,
validity time), so any subset of a file gets the same observations.
"""
from __future__ import annotations

import zlib

import numpy as np
from scipy.ndimage import binary_erosion

from training.data.observation_config import ObservationConfig, SwathConfig


def seeded_rng(*words: int) -> np.random.Generator:
    """A generator seeded by integer words (each taken modulo 2³²)."""
    return np.random.default_rng([int(w) & 0xFFFFFFFF for w in words])


def name_id(name: str) -> int:
    """A stable integer of a name (CRC-32), for seeding."""
    return zlib.crc32(name.encode())


def valid_hours(times: np.ndarray) -> np.ndarray:
    """Hours since 1970 of datetime64 validity times (an integer key for seeding)."""
    return (np.asarray(times).astype("datetime64[h]").astype(np.int64))


def swath_mask(rng: np.random.Generator, ny: int, nx: int, dx_m: float, swath: SwathConfig) -> np.ndarray:
    """(ny, nx) bool: cells inside parallel swaths of random orientation and offset."""
    y, x = np.meshgrid((np.arange(ny) + 0.5) * dx_m, (np.arange(nx) + 0.5) * dx_m, indexing="ij")
    angle, phase = rng.uniform(0.0, np.pi), rng.uniform(0.0, 1.0)
    across = (x * np.cos(angle) + y * np.sin(angle)) / (swath.period_km * 1e3)
    return np.mod(across + phase, 1.0) < swath.observed_fraction


def drift_cells(sic: np.ndarray, ocean: np.ndarray, min_sic: float, edge_cells: int) -> np.ndarray:
    """(ny, nx) bool: ice cells (sic > min_sic) at least `edge_cells` cells from any open-water ocean cell."""
    ice = ocean & (sic > min_sic)
    if edge_cells <= 0:
        return ice
    water = ocean & ~ice
    near_edge = ~binary_erosion(~water, structure=np.ones((2 * edge_cells + 1,) * 2, bool), border_value=1)
    return ice & ~near_edge


def face_masks(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(east-face, north-face) observed where both neighbouring cells are; closed walls never."""
    east = np.zeros_like(cells)
    east[:, :-1] = cells[:, :-1] & cells[:, 1:]
    north = np.zeros_like(cells)
    north[:-1, :] = cells[:-1, :] & cells[1:, :]
    return east, north


def observation_masks(cfg: ObservationConfig, reference_sic: np.ndarray, ocean: np.ndarray,
                      valid_times: np.ndarray, dx_m: float) -> dict[str, np.ndarray]:
    """{variable: (T, ny, nx) bool} observed cells per variable at the validity times (t + 12 h).

    reference_sic: the true concentration at the validity times (drift needs ice); ocean: (ny, nx) bool.
    """
    t_n, ny, nx = reference_sic.shape
    hours = valid_hours(valid_times)
    days = hours // 24
    edge = int(round(cfg.drift_edge_distance_km * 1e3 / dx_m))
    by_instrument: dict[str, np.ndarray] = {}
    out = {}
    for v, vc in cfg.variables.items():
        key = vc.instrument
        if key not in by_instrument:
            inst = name_id(key)
            cells = np.zeros((t_n, ny, nx), bool)
            for t in range(t_n):
                if seeded_rng(cfg.seed, inst, days[t], 1).uniform() < cfg.missing_day_probability:
                    continue  # the whole day is missing for this instrument
                if vc.sampling == "swath":
                    cells[t] = swath_mask(seeded_rng(cfg.seed, inst, hours[t], 2), ny, nx, dx_m, cfg.swath) & ocean
                elif vc.sampling == "drift":
                    cells[t] = drift_cells(reference_sic[t], ocean, cfg.drift_min_sic, edge)
                else:
                    cells[t] = ocean
            by_instrument[key] = cells
        cells = by_instrument[key]
        if v in ("siu", "siv"):
            faces = np.stack([face_masks(c)[0 if v == "siu" else 1] for c in cells])
            out[v] = faces
        else:
            out[v] = cells
    return out
