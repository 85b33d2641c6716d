"""Random crops of training windows (train.data.crop) with the geography channels: every channel of a patch — the
state, the target, the land mask, lat and the x/y positions — is cut at the same place; the statistics come from
whole windows; the patches' lattice skips land; a run's conditioning gets the same channels from its forcing file."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from corrector.config import CorrectorConfig
from corrector.fields import GEOGRAPHY_CHANNELS, build_conditioning, geography_fields, pair_file_field
from tests.training.fit.test_dataset_synthetic import write_pair_file
from training.fit.augment import crop_fields, crop_origins
from training.fit.dataset import PairDataset

NY, NX, CROP = 16, 24, 8


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory):
    """A synthetic pair file with land on the left third, 2-D lat and projection x/y (as a region's files have)."""
    d = tmp_path_factory.mktemp("crops")
    path = write_pair_file(d / "raw.nc", n_time=6, ny=NY, nx=NX, runs=1, land=False)
    ds = xr.open_dataset(path).load()
    mask = np.ones((NY, NX), np.float32)
    mask[:, :7] = 0.0  # a coast: columns 0-6 are land
    ds["mask"] = (("y", "x"), mask)
    ds = ds.assign_coords(x=("x", -1.0e6 + 25e3 * np.arange(NX)), y=("y", 5.0e5 + 25e3 * np.arange(NY)),
                          lat=(("y", "x"), 70.0 + 0.1 * np.arange(NY)[:, None] + 0.01 * np.arange(NX)[None, :]))
    out = d / "pairs.nc"
    ds.to_netcdf(out)
    return out


def emulator(**kw) -> CorrectorConfig:
    cond = ["initial_sic", "initial_siu", "initial_siv", "uas_t0", "mask", *GEOGRAPHY_CHANNELS]
    return CorrectorConfig(kind="deterministic", mode="emulator", conditioning=cond, **kw)


def test_crop_origins_cover_the_domain_and_skip_land():
    ocean = np.zeros((NY, NX), bool)
    ocean[:, 12:] = True
    origins = crop_origins(ocean, CROP, 4, min_ocean=0.1)
    assert origins[:, 0].max() == NY - CROP and origins[:, 1].max() == NX - CROP  # the far edges are reached
    assert all(ocean[j:j + CROP, i:i + CROP].mean() >= 0.1 for j, i in origins)
    assert (0, 0) not in {tuple(o) for o in origins}  # all land: skipped
    with pytest.raises(ValueError):
        crop_origins(ocean, NY + 1, 4, 0.1)


def test_patches_keep_mask_lat_and_positions_aligned_with_the_state(pair_file):
    cfg = emulator()
    whole = PairDataset.for_config(cfg, pair_file)
    crops = PairDataset.for_config(cfg, pair_file, crop=CROP, crop_stride=4)
    n_o = len(crops.origins)
    assert len(crops) == 6 * n_o and crops.n_windows == 6 and (crops.ny, crops.nx) == (NY, NX)
    raw = xr.open_dataset(pair_file)
    geo = geography_fields(raw)
    names = list(cfg.conditioning)
    for p in (0, n_o - 1, 3 * n_o + 2, len(crops) - 1):
        item, full = crops[p], whole[p // n_o]
        j0, i0 = crops.origins[p % n_o]
        sl = np.s_[j0:j0 + CROP, i0:i0 + CROP]
        assert item["cond"].shape == (len(names), CROP, CROP) and item["target"].shape[-2:] == (CROP, CROP)
        # every channel is the whole window's field cut at the patch
        assert np.array_equal(item["cond"].numpy(), full["cond"].numpy()[(slice(None), *sl)])
        assert np.array_equal(item["target"].numpy(), full["target"].numpy()[(slice(None), *sl)])
        assert np.array_equal(item["target_mask"].numpy(), full["target_mask"].numpy()[(slice(None), *sl)])
        ocean = raw["mask"].values[sl] > 0.5
        assert np.array_equal(item["cond"][names.index("mask")].numpy() > 0.5, ocean)
        lat = item["cond"][names.index("lat")].numpy()
        assert np.allclose(lat[ocean], geo["lat"][sl][ocean]) and np.all(lat[~ocean] == 0)
        x = item["cond"][names.index("x_position")].numpy()
        assert np.allclose(x[ocean], geo["x_position"][sl][ocean])
        sic = item["cond"][names.index("initial_sic")].numpy()
        w = int(whole.indices[p // n_o])
        assert np.allclose(sic[ocean], raw["initial_sic"].values[w][sl][ocean], atol=1e-6)


def test_statistics_come_from_whole_windows(pair_file):
    cfg = emulator()
    n_whole, _ = PairDataset.for_config(cfg, pair_file).fit_normalization()
    n_crop, _ = PairDataset.for_config(cfg, pair_file, crop=CROP).fit_normalization()
    assert np.allclose(n_whole.cond_mean, n_crop.cond_mean) and np.allclose(n_whole.target_std, n_crop.target_std)


def test_a_run_gets_the_geography_channels_from_its_forcing_file(pair_file):
    raw = xr.open_dataset(pair_file)
    geo = geography_fields(raw)
    assert set(geo) == set(GEOGRAPHY_CHANNELS)
    assert np.array_equal(pair_file_field("lat", raw, 6, (NY, NX)), geo["lat"])
    yy = pair_file_field("y_position", raw, 6, (NY, NX))
    assert np.allclose(yy[:, 0], raw["y"].values) and np.allclose(yy[0], raw["y"].values[0])
    initial = np.zeros((2, 5, NY, NX))
    f = {"uas": np.zeros((2, NY, NX))}
    cond = build_conditioning(["lat", "x_position", "mask"], ["sic", "sit", "snt", "siu", "siv"], initial, None,
                              f, f, raw["mask"].values, geography=geo)
    assert np.array_equal(cond["x_position"], geo["x_position"])


def test_crop_fields_is_a_copy():
    a = np.arange(2 * NY * NX, dtype=float).reshape(2, NY, NX)
    c = crop_fields(a, (3, 5), 4)
    c[:] = -1
    assert a[0, 3, 5] == 3 * NX + 5 and c.shape == (2, 4, 4)
