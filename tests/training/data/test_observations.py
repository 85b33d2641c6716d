"""Observation pair files: synthetic gappy observations of a twin (coverage, gap patterns, noise, seeding) and
ingestion of user observation files on the model grid (values, masks, uncertainty, clear errors)."""
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from icecorr.base.errors import InputError
from training.fit.dataset import PairDataset
from training.data.observation_config import IngestConfig, ObservationConfig
from training.data.observation_gaps import drift_cells
from training.data.observations import ingest, main, synthesize
from tests.training.fit.test_dataset_synthetic import write_pair_file

N = 16


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    """A complete pair file with an ice edge: open water in the west third of the domain."""
    d = tmp_path_factory.mktemp("twin")
    path = write_pair_file(d / "pairs.nc", n_time=24, runs=1, seed=3)
    ds = xr.load_dataset(path)
    for p in ("initial", "reference"):
        a = ds[f"{p}_sic"].values
        a[:, :, :5] = 0.05
        ds[f"{p}_sic"].values = a
    ds.to_netcdf(d / "pairs_edge.nc")
    return d / "pairs_edge.nc"


def test_synthetic_coverage_gaps_and_noise(twin, tmp_path):
    out = tmp_path / "obs.nc"
    cfg = ObservationConfig(seed=1)
    cov = synthesize(twin, out, cfg)
    assert cov["sic"] <= 0.6 and cov["sit"] <= 0.6  # ≥ 40 % of the ocean cells missing
    assert cov["sic"] >= 0.25 and cov["sit"] >= 0.25
    ds, truth = xr.load_dataset(out), xr.load_dataset(twin)
    ocean = ds["mask"].values > 0.5
    for v in ("sic", "sit", "snt", "siu", "siv"):
        m = ds[f"observed_{v}"].values.astype(bool)
        ref, res = ds[f"reference_{v}"].values, ds[f"residual_{v}"].values
        assert np.all(np.isfinite(ref[m])) and np.all(np.isnan(ref[~m])) and np.all(np.isnan(res[~m]))
        np.testing.assert_allclose(res[m], ref[m] - ds[f"forecast_{v}"].values[m], atol=1e-6)
        assert not m[:, ~ocean].any()
        np.testing.assert_allclose(ds[f"obs_error_{v}"].values[m], cfg.variables[v].noise_std, rtol=1e-6)
        z = (ref[m] - truth[f"reference_{v}"].values[m]) / cfg.variables[v].noise_std
        assert abs(z.mean()) < 0.05 and 0.9 < z.std() < 1.1  # unbiased, the configured std
        np.testing.assert_array_equal(ds[f"initial_{v}"].values, truth[f"initial_{v}"].values)  # conditioning kept
    sic_m, sit_m, snt_m = (ds[f"observed_{v}"].values.astype(bool) for v in ("sic", "sit", "snt"))
    np.testing.assert_array_equal(sit_m, snt_m)  # one instrument, one gap pattern
    assert not np.array_equal(sic_m, sit_m)  # different instruments, different swaths
    moving = [not np.array_equal(sic_m[t], sic_m[t + 1]) for t in range(len(sic_m) - 1) if sic_m[t].any()]
    assert all(moving)  # swaths move from one record to the next
    # drift: only over ice, away from the edge (west third is open water, edge distance 2 cells), never on walls
    u = ds["observed_siu"].values.astype(bool)
    v_ = ds["observed_siv"].values.astype(bool)
    assert not u[:, :, :7].any() and not v_[:, :, :7].any()
    assert not u[:, :, -1].any() and not v_[:, -1, :].any()
    assert u.any() and 0.3 < cov["siu"] < 1.0
    assert np.isnan(ds["reference_damage"].values).all()
    assert "sic=" in ds.attrs["observation_coverage"]


def test_seeding_is_reproducible_and_seed_dependent(twin, tmp_path):
    a, b, c = (tmp_path / f"{k}.nc" for k in "abc")
    synthesize(twin, a, ObservationConfig(seed=5))
    synthesize(twin, b, ObservationConfig(seed=5))
    synthesize(twin, c, ObservationConfig(seed=6))
    da, db, dc = (xr.load_dataset(p) for p in (a, b, c))
    for v in ("sic", "sit", "siu"):
        np.testing.assert_array_equal(da[f"reference_{v}"].values, db[f"reference_{v}"].values)
    assert not np.array_equal(da["observed_sic"].values, dc["observed_sic"].values)
    # observations depend on (seed, validity time) only: a subset of the windows gets the same observations
    sub = tmp_path / "sub.nc"
    xr.load_dataset(twin).isel(time=slice(7, 15)).to_netcdf(sub)
    synthesize(sub, tmp_path / "sub_obs.nc", ObservationConfig(seed=5))
    ds = xr.load_dataset(tmp_path / "sub_obs.nc")
    np.testing.assert_array_equal(ds["reference_sit"].values, da["reference_sit"].values[7:15])


def test_missing_days_and_complete_sampling(twin, tmp_path):
    cfg = ObservationConfig(missing_day_probability=1.0)
    cov = synthesize(twin, tmp_path / "none.nc", cfg)
    assert all(c == 0 for c in cov.values())
    full = ObservationConfig.model_validate({"missing_day_probability": 0.0, "variables": {
        v: {"instrument": "model", "sampling": "complete", "noise_std": 0.0} for v in ("sic", "sit", "snt")}})
    cov = synthesize(twin, tmp_path / "full.nc", full)
    assert cov == {"sic": 1.0, "sit": 1.0, "snt": 1.0}
    ds, truth = xr.load_dataset(tmp_path / "full.nc"), xr.load_dataset(twin)
    ocean = ds["mask"].values > 0.5
    np.testing.assert_array_equal(ds["reference_sit"].values[:, ocean], truth["reference_sit"].values[:, ocean])
    assert np.isnan(ds["reference_sit"].values[:, ~ocean]).all()  # land is never observed
    assert np.isnan(ds["reference_siu"].values).all()  # not observed at all
    p = 0.5
    cov = synthesize(twin, tmp_path / "half.nc", ObservationConfig(missing_day_probability=p, seed=2))
    days = xr.load_dataset(tmp_path / "half.nc")["observed_siu"].values.reshape(12, 2, -1).any(axis=(1, 2))
    assert 0 < days.sum() < 12  # some whole days missing, not all


def test_drift_cells_erode_the_ice_edge():
    sic = np.ones((8, 8))
    sic[:, :2] = 0.0
    ocean = np.ones((8, 8), bool)
    cells = drift_cells(sic, ocean, 0.15, 2)
    assert not cells[:, :4].any() and cells[:, 4:].all()
    assert drift_cells(sic, ocean, 0.15, 0)[:, 2:].all()


def test_observation_file_trains_only_on_observed_cells(twin, tmp_path):
    out = tmp_path / "obs.nc"
    cov = synthesize(twin, out, ObservationConfig(seed=1))
    from corrector.config import CorrectorConfig

    c = CorrectorConfig(kind="deterministic", mode="emulator")
    ds = PairDataset.for_config(c, out)
    norm, coverage = ds.fit_normalization()
    for k, v in enumerate(c.variables):
        if v in ("sic", "sit", "snt"):
            assert coverage[k] == pytest.approx(cov[v], rel=1e-6)
    item = ds.with_normalization(norm)[3]
    obs = xr.load_dataset(out)["observed_sit"].values[3]
    np.testing.assert_array_equal(item["target_mask"][1].numpy() > 0, obs.astype(bool))


# ----------------------------------------------------------------------------------------------------------------
# Ingestion
# ----------------------------------------------------------------------------------------------------------------

def _user_obs(path: Path, pairs: Path, **change) -> Path:
    """User observations at the validity times of the pair file's windows 2..9: sic in percent with a status mask
    and an uncertainty field; drift at cell centres in cm/s."""
    p = xr.load_dataset(pairs)
    times = p["time"].values[2:10] + np.timedelta64(12, "h")
    rng = np.random.default_rng(0)
    sic = 100 * p["reference_sic"].values[2:10] + rng.normal(0, 1, (8, N, N))
    status = (rng.uniform(size=(8, N, N)) > 0.3).astype(np.int8)
    u = 100 * rng.normal(0, 0.05, (8, N, N))
    v = 100 * rng.normal(0, 0.05, (8, N, N))
    u[:, 4, 4] = np.nan
    ds = xr.Dataset({"ice_conc": (("time", "yc", "xc"), sic, {"units": "%"}),
                     "ice_conc_err": (("time", "yc", "xc"), np.full((8, N, N), 3.0), {"units": "%"}),
                     "status": (("time", "yc", "xc"), status),
                     "dx": (("time", "yc", "xc"), u, {"units": "cm s-1"}),
                     "dy": (("time", "yc", "xc"), v, {"units": "cm s-1"})},
                    coords={"time": times})
    for k, val in change.items():
        if val is None:
            ds = ds.drop_vars(k)
        else:
            ds[k] = val(ds[k]) if callable(val) else val
    ds.to_netcdf(path)
    return path


def _ingest_cfg(pairs: Path, obs: Path, **kw) -> IngestConfig:
    d = {"pairs": str(pairs), "files": [str(obs)], "dims": {"time": "time", "y": "yc", "x": "xc"},
         "variables": {"sic": {"name": "ice_conc", "units": "%", "mask": "status",
                               "error": {"name": "ice_conc_err", "units": "%"}},
                       "siu": {"name": "dx", "units": "cm s-1", "error_std": 0.02},
                       "siv": {"name": "dy", "units": "cm s-1", "error_std": 0.02}}}
    d.update(kw)
    return IngestConfig.model_validate(d)


def test_ingest_values_masks_and_uncertainty(twin, tmp_path):
    obs = _user_obs(tmp_path / "user.nc", twin)
    cov = ingest(_ingest_cfg(twin, obs), tmp_path / "out.nc")
    ds, user = xr.load_dataset(tmp_path / "out.nc"), xr.load_dataset(obs)
    ocean = ds["mask"].values > 0.5
    m = ds["observed_sic"].values.astype(bool)
    assert not m[:2].any() and not m[10:].any()  # windows whose validity time has no record
    expect = (user["status"].values != 0) & ocean
    np.testing.assert_array_equal(m[2:10], expect)
    np.testing.assert_allclose(ds["reference_sic"].values[2:10][expect], 0.01 * user["ice_conc"].values[expect],
                               rtol=1e-6)
    np.testing.assert_allclose(ds["obs_error_sic"].values[m], 0.03, rtol=1e-6)
    # drift: centre -> face averaging; the NaN centre removes its two neighbouring faces
    u = ds["reference_siu"].values[2]
    uc = 0.01 * user["dx"].values[0]
    assert np.isnan(u[4, 3]) and np.isnan(u[4, 4])
    j, i = 8, 8
    assert u[j, i] == pytest.approx(0.5 * (uc[j, i] + uc[j, i + 1]), rel=1e-6)
    assert np.isnan(ds["reference_sit"].values).all()  # sit not observed
    assert cov["sic"] == pytest.approx(expect.sum() / (24 * ocean.sum()), rel=1e-9)


@pytest.mark.parametrize("change, cfg_change, field, message", [
    ({"ice_conc": None}, {}, "ice_conc", "missing"),
    ({"ice_conc": lambda a: a.assign_attrs(units="1")}, {}, "ice_conc", "units attribute '1' differs"),
    ({"ice_conc": lambda a: a * 10}, {}, "ice_conc", "outside the plausible range"),
    ({"ice_conc_err": lambda a: a * 0}, {}, "ice_conc_err", "positive finite uncertainty"),
    ({"dx": lambda a: a.transpose("time", "xc", "yc")}, {}, "dx", "dimensions"),
    ({}, {"dims": {"time": "t", "y": "yc", "x": "xc"}}, "t", "no time dimension"),
    ({}, {"files": ["nonexistent.nc"]}, "ingest.files", "file not found"),
])
def test_ingest_rejects_bad_files_with_one_clear_message(twin, tmp_path, change, cfg_change, field, message):
    obs = _user_obs(tmp_path / "user.nc", twin, **change)
    cfg = _ingest_cfg(twin, obs, **cfg_change)
    if cfg_change.get("files"):
        cfg = _ingest_cfg(twin, obs, files=[str(tmp_path / "nonexistent.nc")])
    with pytest.raises(InputError) as err:
        ingest(cfg, tmp_path / "out.nc")
    assert err.value.field == field and message in str(err.value)
    assert err.value.file is not None and Path(err.value.file).name in str(err.value)
    assert not (tmp_path / "out.nc").exists()


def test_ingest_rejects_times_that_match_no_window(twin, tmp_path):
    obs = _user_obs(tmp_path / "user.nc", twin)
    ds = xr.load_dataset(obs)
    ds["time"] = ds["time"].values + np.timedelta64(3, "h")
    ds.to_netcdf(tmp_path / "shifted.nc")
    with pytest.raises(InputError, match=r"shifted\.nc.*field 'time'.*no observation time"):
        ingest(_ingest_cfg(twin, tmp_path / "shifted.nc"), tmp_path / "out.nc")


def test_cli_synth_and_config_errors(twin, tmp_path, capsys):
    assert main(["synth", str(twin), "-o", str(tmp_path / "o.nc"), "observations.seed=4"]) == 0
    assert "observed share" in capsys.readouterr().out
    assert main(["synth", str(twin), "-o", str(tmp_path / "o.nc"), "observations.sed=4"]) == 2
    assert "unknown key 'observations.sed'" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "missing.nc"), "-o", str(tmp_path / "o2.nc")]) == 2
    assert "missing.nc" in capsys.readouterr().err
    with pytest.raises(ValueError, match="exactly one of"):
        IngestConfig.model_validate({"pairs": "p.nc", "files": ["o.nc"],
                                     "variables": {"sic": {"name": "c", "units": "1"}}})
