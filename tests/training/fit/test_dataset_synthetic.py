"""Synthetic training-pair files (docs/design.md 'Training-pair files') with a learnable residual, for the
dataset/fit/DDP tests; plus a check that they follow the contract.

The residual is a fixed linear function of the forecast tendency (forecast − initial) and of the t1 wind, plus a
little noise, so a tiny network can learn it and the RMSE of the corrected forecast must fall below the uncorrected.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

VARIABLES = ["sic", "sit", "snt", "siu", "siv"]
FORCING = ["uas", "vas", "tas", "huss", "rsds", "rlds", "prsn", "uo", "vo"]
SCALE = {"sic": 0.05, "sit": 0.1, "snt": 0.02, "siu": 0.05, "siv": 0.05}
MEAN = {"sic": 0.8, "sit": 1.5, "snt": 0.2, "siu": 0.0, "siv": 0.0}
FORCING_MEAN = {"tas": 260.0, "huss": 1e-3, "rsds": 100.0, "rlds": 250.0, "prsn": 1e-5}
FORCING_SCALE = {"uas": 5.0, "vas": 5.0, "tas": 5.0, "huss": 3e-4, "rsds": 20.0, "rlds": 20.0, "prsn": 5e-6,
                 "uo": 0.05, "vo": 0.05}


def smooth_fields(rng: np.random.Generator, n: int, ny: int, nx: int, modes: int = 3) -> np.ndarray:
    """(n, ny, nx) random smooth fields of unit-ish amplitude: a sum of a few low Fourier modes."""
    y, x = np.meshgrid(np.arange(ny) / ny, np.arange(nx) / nx, indexing="ij")
    out = np.zeros((n, ny, nx))
    for _ in range(modes):
        kx, ky = rng.integers(0, 3, size=2)
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
        amp = rng.normal(size=(n, 1, 1))
        out += amp * np.cos(2 * np.pi * (kx * x + ky * y) + phase)
    return out / np.sqrt(modes)


def _walls(name: str, a: np.ndarray) -> np.ndarray:
    """Closed walls: u on the east wall and v on the north wall are 0."""
    a = a.copy()
    if name.endswith("siu"):
        a[..., :, -1] = 0.0
    if name.endswith("siv"):
        a[..., -1, :] = 0.0
    return a


def write_pair_file(path: str | Path, n_time: int = 48, ny: int = 16, nx: int = 16, runs: int = 2, seed: int = 0,
                    noise: float = 0.05, land: bool = True, nan_fraction: float = 0.0) -> Path:
    """Write a pair file and return its path. `nan_fraction` of reference cells are NaN (gappy observations)."""
    rng = np.random.default_rng(seed)
    data: dict[str, tuple] = {}
    dims = ("time", "y", "x")
    wind_t1 = smooth_fields(rng, n_time, ny, nx)
    for k, v in enumerate(VARIABLES):
        initial = _walls(v, MEAN[v] + SCALE[v] * smooth_fields(rng, n_time, ny, nx))
        tendency = _walls(v, SCALE[v] * smooth_fields(rng, n_time, ny, nx))
        forecast = initial + tendency
        # the model error: 40 % of the tendency missing, a wind-driven part, and unpredictable noise
        residual = _walls(v, -0.4 * tendency + 0.3 * SCALE[v] * wind_t1
                          + noise * SCALE[v] * rng.normal(size=(n_time, ny, nx)))
        reference = forecast + residual
        if nan_fraction > 0:
            gaps = rng.uniform(size=reference.shape) < nan_fraction
            reference = np.where(gaps, np.nan, reference)
            residual = np.where(gaps, np.nan, residual)
        for prefix, a in (("initial", initial), ("forecast", forecast), ("reference", reference),
                          ("residual", residual)):
            data[f"{prefix}_{v}"] = (dims, a.astype(np.float32))
    data["initial_damage"] = (dims, rng.uniform(size=(n_time, ny, nx)).astype(np.float32))
    data["reference_damage"] = (dims, rng.uniform(size=(n_time, ny, nx)).astype(np.float32))
    for f in FORCING:
        for t in ("t0", "t1"):
            field = wind_t1 if (f, t) == ("uas", "t1") else smooth_fields(rng, n_time, ny, nx)
            data[f"{f}_{t}"] = (dims, (FORCING_MEAN.get(f, 0.0) + FORCING_SCALE[f] * field).astype(np.float32))
    mask = np.ones((ny, nx), np.float32)
    if land:
        mask[:2, :3] = 0.0  # a small island in a corner
    data["mask"] = (("y", "x"), mask)
    data["run"] = (("time",), np.repeat(np.arange(runs), -(-n_time // runs))[:n_time].astype(np.int32))
    coords = {
        "time": np.datetime64("2000-10-01T00:00") + np.arange(n_time) * np.timedelta64(12, "h"),
        "y": (np.arange(ny) + 0.5) * 16000.0, "x": (np.arange(nx) + 0.5) * 16000.0,
    }
    ds = xr.Dataset(data, coords=coords,
                    attrs={"icecorr_version": "test", "producer": "tests/training/fit/test_dataset_synthetic.py",
                           "config": "{}", "grid_dx": 16000.0})
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    ds.to_netcdf(tmp)
    tmp.replace(path)
    return path


def test_synthetic_pair_file_follows_contract(tmp_path):
    p = write_pair_file(tmp_path / "train.nc", n_time=6, nan_fraction=0.1)
    with xr.open_dataset(p) as ds:
        assert ds["residual_sic"].dims == ("time", "y", "x")
        for v in VARIABLES:
            r = ds[f"reference_{v}"] - ds[f"forecast_{v}"]
            np.testing.assert_allclose(ds[f"residual_{v}"], r, atol=1e-6)
        assert float(np.abs(ds["forecast_siu"][..., -1]).max()) == 0.0  # east wall
        assert float(np.abs(ds["forecast_siv"][..., -1, :]).max()) == 0.0  # north wall
        assert 0.05 < float(ds["reference_sit"].isnull().mean()) < 0.15
        assert {f"{f}_{t}" for f in FORCING for t in ("t0", "t1")} <= set(ds.variables)
