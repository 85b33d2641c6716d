"""Dataset: C-grid-aware augmentation, normalisation, gappy targets, lazy vs cached reading, batching, errors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import xarray as xr

from icecorr.base.errors import InputError
from training.data.coarsegrain import cgrid_divergence
from training.fit.augment import Flags, augment_fields, split_name, xy_partner
from training.fit.dataset import PairDataset, collate, epoch_batches, split_windows
from tests.training.fit.test_dataset_synthetic import VARIABLES, write_pair_file

ALL_FLAGS = [Flags(*f) for f in itertools.product([False, True], repeat=3)]
COND = ([f"initial_{v}" for v in VARIABLES] + [f"forecast_{v}" for v in VARIABLES]
        + [f"{f}_{t}" for t in ("t0", "t1") for f in ("uas", "vas", "tas", "uo", "vo")] + ["mask"])


def _cgrid_velocity(rng, n=16):
    u, v = rng.normal(size=(2, n, n))
    u[:, -1] = 0.0  # east wall
    v[-1, :] = 0.0  # north wall
    return u, v


def _scalar(a, flags):
    """The reference transform of a cell-centred scalar field: np.rot90 then flips."""
    if flags.rot90:
        a = np.rot90(a, axes=(-2, -1))
    if flags.flip_x:
        a = np.flip(a, -1)
    if flags.flip_y:
        a = np.flip(a, -2)
    return a


def test_names():
    assert split_name("forecast_siu") == ("forecast_", "siu", "")
    assert split_name("uas_t1") == ("", "uas", "_t1")
    assert xy_partner("residual_siu") == "residual_siv"
    assert xy_partner("vo_t0") == "uo_t0"
    assert xy_partner("sic") == "sic"


@pytest.mark.parametrize("flags", ALL_FLAGS, ids=str)
def test_augmented_divergence_is_augmented_divergence(flags):
    """Divergence is a scalar: div(T(u, v)) must equal T(div(u, v)) exactly, which checks signs, the u/v exchange
    and the re-staggering of face values for every flip/rotation combination."""
    u, v = _cgrid_velocity(np.random.default_rng(1))
    out = augment_fields(np.stack([u, v]), ["siu", "siv"], flags)
    np.testing.assert_allclose(cgrid_divergence(out[0], out[1], 1.0), _scalar(cgrid_divergence(u, v, 1.0), flags),
                               atol=1e-12)
    # walls stay closed
    assert np.all(out[0][:, -1] == 0) and np.all(out[1][-1, :] == 0)


@pytest.mark.parametrize("flags", ALL_FLAGS, ids=str)
def test_augmented_vorticity_and_centred_vectors(flags):
    """Cell-centred vectors (wind) rotate/reflect as vectors: vorticity flips sign under reflections only."""
    rng = np.random.default_rng(2)
    uas, vas, tas = rng.normal(size=(3, 16, 16))
    out = augment_fields(np.stack([tas, uas, vas]), ["tas_t0", "uas_t0", "vas_t0"], flags)
    np.testing.assert_array_equal(out[0], _scalar(tas, flags))
    # centred-difference vorticity dv/dx − du/dy (interior) is a pseudo-scalar
    def vort(u, v):
        return (v[1:-1, 2:] - v[1:-1, :-2]) - (u[2:, 1:-1] - u[:-2, 1:-1])
    sign = (-1) ** (flags.flip_x + flags.flip_y)
    np.testing.assert_allclose(vort(out[1], out[2]), sign * _scalar(vort(uas, vas), flags), atol=1e-12)
    # speed is a scalar
    np.testing.assert_allclose(np.hypot(out[1], out[2]), _scalar(np.hypot(uas, vas), flags), atol=1e-12)


def test_rotation_group_identities():
    rng = np.random.default_rng(3)
    u, v = _cgrid_velocity(rng)
    f = np.stack([u, v])
    names = ["siu", "siv"]
    x = f
    for _ in range(4):
        x = augment_fields(x, names, Flags(rot90=True))
    np.testing.assert_allclose(x, f, atol=0)  # four quarter turns = identity
    twice = augment_fields(augment_fields(f, names, Flags(flip_x=True)), names, Flags(flip_x=True))
    np.testing.assert_array_equal(twice, f)
    # the explicit rule: u'(east face of cell (j, i)) = −u(east face of cell (j, nx−2−i))
    fx = augment_fields(f, names, Flags(flip_x=True))
    np.testing.assert_array_equal(fx[0][:, :-1], -u[:, -2::-1])
    np.testing.assert_array_equal(fx[1], v[:, ::-1])
    # rot90: (u', v') = (v, −u) on the rotated grid, faces exchanged exactly
    r = augment_fields(f, names, Flags(rot90=True))
    np.testing.assert_array_equal(r[0], v.T[::-1, :])
    np.testing.assert_array_equal(r[1][:-1], -u.T[-2::-1, :])
    assert np.all(r[1][-1] == 0)
    with pytest.raises(ValueError, match="square"):
        augment_fields(np.zeros((2, 8, 16)), names, Flags(rot90=True))


def test_mask_augmentation_keeps_walls_and_values():
    m = np.ones((2, 16, 16))
    m[0, 3, 4] = 0.0
    for flags in ALL_FLAGS:
        out = augment_fields(m, ["siu", "sic"], flags, is_mask=True)
        assert set(np.unique(out)) <= {0.0, 1.0}
        assert out[1].sum() == 256 and out[0].sum() == 255


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory):
    return write_pair_file(tmp_path_factory.mktemp("pairs") / "train.nc", n_time=24, nan_fraction=0.1)


def test_items_shapes_normalisation_and_masks(pair_file):
    raw = PairDataset(pair_file, VARIABLES, COND, "residual")
    norm, coverage = raw.fit_normalization(chunk=5)
    ds = raw.with_normalization(norm)
    assert len(ds) == 24
    item = ds[3]
    assert item["target"].shape == (5, 16, 16) and item["cond"].shape == (len(COND), 16, 16)
    assert item["labels"].tolist() == [0, 0, 0]
    with xr.open_dataset(pair_file) as f:
        ocean = f["mask"].values > 0.5
        res = f["residual_sit"].values
        observed = np.isfinite(res) & ocean
        # statistics over observed ocean cells only (NaN and land ignored)
        np.testing.assert_allclose(norm.target_mean[1], res[observed].mean(), rtol=1e-5)
        np.testing.assert_allclose(norm.target_std[1], res[observed].std(), rtol=1e-4)
        np.testing.assert_allclose(coverage[1], observed.sum() / (24 * ocean.sum()), rtol=1e-12)
        assert 0.85 < coverage[1] < 0.95
        np.testing.assert_array_equal(item["target_mask"][1].numpy(), observed[3])
        expect = np.where(observed[3], (res[3] - norm.target_mean[1]) / norm.target_std[1], 0.0)
        np.testing.assert_allclose(item["target"][1].numpy(), expect, atol=1e-5)
        uas = f["uas_t0"].values[3]
        k = COND.index("uas_t0")
        expect = np.where(ocean, (uas - norm.cond_mean[k]) / norm.cond_std[k], 0.0)
        np.testing.assert_allclose(norm.cond_mean[k], f["uas_t0"].values[:, ocean].mean(), rtol=1e-5)
        np.testing.assert_allclose(item["cond"][k].numpy(), expect, atol=1e-4)
        np.testing.assert_array_equal(item["cond"][-1].numpy(), ocean)  # the mask channel stays 0/1
    assert not torch.isnan(item["target"]).any()
    # normalised train targets have ~zero mean, unit std over observed cells
    batch = collate(ds.__getitems__(list(range(24))))
    obs = batch["target_mask"] > 0
    t = batch["target"][obs]
    assert abs(float(t.mean())) < 1e-3 and abs(float(t.std()) - 1) < 0.05


def test_augmented_item_matches_augmented_fields(pair_file):
    raw = PairDataset(pair_file, VARIABLES, COND, "residual")
    flags = Flags(flip_x=True, rot90=True)
    item = raw[(5, 1, 0, 1)]
    assert item["labels"].tolist() == [1, 0, 1]
    plain = raw[5]
    expect = augment_fields(plain["target"].numpy(), VARIABLES, flags)
    expect_mask = augment_fields(plain["target_mask"].numpy(), VARIABLES, flags, is_mask=True)
    np.testing.assert_array_equal(item["target_mask"].numpy(), expect_mask)
    np.testing.assert_allclose(item["target"].numpy(), expect, atol=1e-7)
    # the forecast divergence of the augmented item is the augmented divergence
    iu, iv = COND.index("forecast_siu"), COND.index("forecast_siv")
    div = cgrid_divergence(item["cond"][iu].numpy(), item["cond"][iv].numpy(), 1.0)
    ref = _scalar(cgrid_divergence(plain["cond"][iu].numpy(), plain["cond"][iv].numpy(), 1.0), flags)
    land = _scalar(~raw.ocean, flags)
    np.testing.assert_allclose(np.where(land, 0, div), np.where(land, 0, ref), atol=1e-6)


def test_emulator_target_and_lazy_reading_match_cached(pair_file):
    cached = PairDataset(pair_file, VARIABLES, COND[:5] + COND[10:], "emulator", indices=[2, 7, 11],
                         state_variables=[])
    lazy = PairDataset(pair_file, VARIABLES, COND[:5] + COND[10:], "emulator", indices=[2, 7, 11], cache_max_mb=0,
                       state_variables=[])
    assert cached._memory is not None and lazy._memory is None
    keys = [(2, 1, 1, 0), 0, (1, 0, 1, 1)]
    for a, b in zip(cached.__getitems__(keys), lazy.__getitems__(keys)):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    with xr.open_dataset(pair_file) as f:
        tend = f["reference_sic"].values[11] - f["initial_sic"].values[11]
    obs = np.isfinite(tend) & cached.ocean
    np.testing.assert_allclose(cached[2]["target"][0].numpy(), np.where(obs, tend, 0), atol=1e-6)


def test_missing_variable_and_nan_conditioning_are_named(tmp_path):
    p = write_pair_file(tmp_path / "bad.nc", n_time=4)
    with pytest.raises(InputError, match=r"bad\.nc.*'forecast_zzz'"):
        PairDataset(p, VARIABLES, ["forecast_zzz"], "residual")
    with xr.open_dataset(p) as f:
        f = f.load()
    f["tas_t1"][1, 8, 8] = np.nan
    p2 = tmp_path / "nan.nc"
    f.to_netcdf(p2)
    with pytest.raises(InputError, match=r"nan\.nc.*'tas_t1'.*NaN"):
        PairDataset(p2, VARIABLES, ["tas_t1"], "residual").fit_normalization()


def test_grid_spacing_comes_from_the_attribute_or_x_and_is_never_zero(tmp_path):
    """A checkpoint records the pair file's cell size: grid_dx, else x's spacing in any length spelling (16 km in
    km here), else an error naming grid_dx (a hand-built file once trained into a checkpoint with dx = 0 m)."""
    with xr.open_dataset(write_pair_file(tmp_path / "p.nc", n_time=4)) as f:
        f = f.load()
    del f.attrs["grid_dx"]
    f = f.assign_coords(x=f["x"] / 1000.0)
    f["x"].attrs["units"] = "kilometre"
    f.to_netcdf(tmp_path / "km.nc")
    assert PairDataset(tmp_path / "km.nc", VARIABLES, ["forecast_sic"], "residual").grid_dx == pytest.approx(16000.0)
    f = f.drop_vars("x")
    f.to_netcdf(tmp_path / "none.nc")
    with pytest.raises(InputError, match=r"none\.nc.*'grid_dx'.*no grid spacing"):
        PairDataset(tmp_path / "none.nc", VARIABLES, ["forecast_sic"], "residual")
    f.attrs["grid_dx"] = 0.0
    f.to_netcdf(tmp_path / "zero.nc")
    with pytest.raises(InputError, match=r"zero\.nc.*'grid_dx'.*positive"):
        PairDataset(tmp_path / "zero.nc", VARIABLES, ["forecast_sic"], "residual")


def test_epoch_batches_are_deterministic_and_shard_like_one_rank():
    one = epoch_batches(40, 8, seed=3, epoch=2)
    assert one == epoch_batches(40, 8, seed=3, epoch=2)
    assert one != epoch_batches(40, 8, seed=3, epoch=3)
    r0 = epoch_batches(40, 4, seed=3, epoch=2, rank=0, world=2)
    r1 = epoch_batches(40, 4, seed=3, epoch=2, rank=1, world=2)
    assert len(one) == len(r0) == len(r1) == 5
    for b, a0, a1 in zip(one, r0, r1):
        assert sorted(b) == sorted(a0 + a1)
    assert any(k[3] for b in one for k in b) and all(k[3] == 0 for b in epoch_batches(40, 8, 0, 0, square=False)
                                                      for k in b)
    assert all(k[1:] == (0, 0, 0) for b in epoch_batches(40, 8, 0, 0, augment=False) for k in b)


def test_split_windows_holds_out_whole_runs():
    runs = np.repeat([0, 1, 2, 3], 10)
    train, val = split_windows(runs, 0.3)
    assert set(runs[val]) == {3, 2} and set(runs[train]) == {0, 1}
    train, val = split_windows(np.zeros(10, int), 0.3)
    assert list(val) == [7, 8, 9]


def test_emulator_state_targets_and_their_normalisation(pair_file):
    """Emulator state variables (the velocities by default) have the next state as target, the others the 12 h
    tendency; the per-channel target statistics are those of these targets."""
    from corrector.config import CorrectorConfig

    c = CorrectorConfig(mode="emulator", conditioning=COND[:5] + COND[10:])
    ds = PairDataset.for_config(c, pair_file, indices=[2, 7, 11])
    assert ds.target_names == ["tendency_sic", "tendency_sit", "tendency_snt", "next_siu", "next_siv"]
    norm, _ = ds.fit_normalization()
    with xr.open_dataset(pair_file) as f:
        ref = {v: f[f"reference_{v}"].values[[2, 7, 11]] for v in VARIABLES}
        ini = {v: f[f"initial_{v}"].values[[2, 7, 11]] for v in VARIABLES}
    ocean = ds.ocean
    for k, v in enumerate(VARIABLES):
        want = ref[v] if v in ("siu", "siv") else ref[v] - ini[v]
        vals = want[:, ocean]
        vals = vals[np.isfinite(vals)]
        assert norm.target_mean[k] == pytest.approx(vals.mean(), rel=1e-4, abs=1e-7), v
        assert norm.target_std[k] == pytest.approx(vals.std(), rel=1e-3), v
    item = ds.with_normalization(norm)[1]
    k = VARIABLES.index("siu")
    obs = np.isfinite(ref["siu"][1]) & ocean
    expect = (ref["siu"][1] - norm.target_mean[k]) / norm.target_std[k]
    np.testing.assert_allclose(item["target"][k].numpy(), np.where(obs, expect, 0), atol=1e-5)
