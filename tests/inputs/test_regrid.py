"""Observations on their own grid: an OSI SAF-like concentration file (percent, a CF `status_flag` with flag
meanings, a 2× finer grid in km, an uncertainty variable) ingested and regridded; observed share, values and
observation error checked against values computed by hand; flag and inverted-mask mistakes are clear errors."""
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.inputs.flags import valid_from_mask
from training.data.observation_config import IngestConfig
from training.data.observations import ingest
from icecorr.inputs.regrid import ModelPlane, Regridder
from tests.training.fit.test_dataset_synthetic import write_pair_file

N, DX = 16, 16000.0     # the pair file's grid (write_pair_file): 16 × 16 cells of 16 km
FLAGS = {"nominal": 0, "land_spill_over": 1, "open_water_filtered": 2}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return write_pair_file(tmp_path_factory.mktemp("pairs") / "pairs.nc", n_time=6, runs=1, seed=5)


def _osisaf_like(path: Path, pairs: Path) -> dict:
    """sic on a 2× finer grid (8 km cells, 32 × 32, x/y in km) for the validity times of records 1..4; within each
    model cell the four sub-cells hold value ± a zero-mean pattern, so the conservative mean is the model value."""
    ds = xr.load_dataset(pairs)
    valid = ds["time"].values[1:5] + np.timedelta64(12, "h")
    truth = ds["reference_sic"].values[1:5]                                  # (4, 16, 16), fraction
    fine = np.repeat(np.repeat(truth, 2, axis=1), 2, axis=2)
    pattern = np.tile(np.array([[1.0, -1.0], [-1.0, 1.0]]), (N, N)) * 0.01
    conc = 100.0 * np.clip(fine + pattern * (fine > 0.02) * (fine < 0.98), 0, 1)
    flag = np.zeros(conc.shape, np.int8)
    flag[:, 8, 8] = FLAGS["land_spill_over"]                 # 1 of 4 sub-cells bad: model cell (4, 4) still observed
    flag[:, 10:12, 10] = flag[:, 10, 11] = FLAGS["land_spill_over"]   # 3 of 4 bad: model cell (5, 5) not observed
    flag[:, 20:22, 20:22] = FLAGS["open_water_filtered"]     # valid when listed in valid_flags
    err = np.full(conc.shape, 4.0)
    err[:, 24:26, 24:26] = np.array([[2.0, 4.0], [4.0, 8.0]])  # model cell (12, 12): sqrt(4+16+16+64)/4 % = 2.5 %
    c = (np.arange(2 * N) + 0.5) * DX / 2 / 1e3
    xr.Dataset(
        {"ice_conc": (("time", "yc", "xc"), conc, {"units": "%", "standard_name": "sea_ice_area_fraction"}),
         "total_standard_uncertainty": (("time", "yc", "xc"), err, {"units": "%"}),
         "status_flag": (("time", "yc", "xc"), flag, {"flag_values": np.array(list(FLAGS.values()), np.int8),
                                                      "flag_meanings": " ".join(FLAGS)})},
        coords={"time": valid, "yc": ("yc", c, {"units": "km"}), "xc": ("xc", c, {"units": "km"})},
    ).to_netcdf(path)
    return {"truth": truth}


def _cfg(pairs: Path, obs: Path, **sic) -> IngestConfig:
    source = {"name": "ice_conc", "units": "%", "mask": "status_flag", "valid_flags": ["nominal", "open_water_filtered"],
              "error": {"name": "total_standard_uncertainty", "units": "%"}, **sic}
    return IngestConfig.model_validate({"pairs": str(pairs), "files": [str(obs)], "variables": {"sic": source},
                                        "dims": {"time": "time", "y": "yc", "x": "xc"}, "regrid": {}})


def test_osisaf_like_file_is_regridded_conservatively(pairs, tmp_path):
    hand = _osisaf_like(tmp_path / "osisaf.nc", pairs)
    cov = ingest(_cfg(pairs, tmp_path / "osisaf.nc"), tmp_path / "out.nc")
    out = xr.load_dataset(tmp_path / "out.nc")
    seen = out["observed_sic"].values.astype(bool)
    assert not seen[0].any() and not seen[5].any()            # no record at these validity times
    ocean = out["mask"].values > 0.5                         # the pair file has land in its south-west corner
    assert not seen[:, ~ocean].any()
    assert seen[1:5].sum(axis=0)[5, 5] == 0                   # 3 of 4 sub-cells flagged: not observed
    assert seen[1:5, 4, 4].all() and seen[1:5, 10, 10].all()  # 1 of 4 flagged / open_water_filtered listed valid
    assert cov["sic"] == pytest.approx(4 * (ocean.sum() - 1) / (6 * ocean.sum()), rel=1e-12)
    ref = out["reference_sic"].values[1:5]
    mask = seen[1:5]
    mask[:, 4, 4] = False  # the mean of 3 sub-cells carries the pattern: checked apart
    np.testing.assert_allclose(ref[mask], hand["truth"][mask], atol=1e-6)   # the ± pattern averages out
    err = out["obs_error_sic"].values[1:5]
    assert err[0, 12, 12] == pytest.approx(0.025, rel=1e-6)
    assert err[0, 6, 6] == pytest.approx(np.sqrt(4 * 0.04 ** 2) / 4, rel=1e-6)
    assert err[0, 4, 4] == pytest.approx(np.sqrt(3 * 0.04 ** 2) / 3, rel=1e-6)
    fine = xr.load_dataset(tmp_path / "osisaf.nc")["ice_conc"].values[0, 8:10, 8:10].ravel()[1:]
    assert ref[0, 4, 4] == pytest.approx(0.01 * fine.mean(), rel=1e-6)


def test_flag_variable_without_valid_flags_is_refused(pairs, tmp_path):
    _osisaf_like(tmp_path / "osisaf.nc", pairs)
    cfg = _cfg(pairs, tmp_path / "osisaf.nc", valid_flags=None)
    with pytest.raises(InputError, match=r"osisaf\.nc.*status_flag.*CF flag variable.*valid_flags"):
        ingest(cfg, tmp_path / "out.nc")
    with pytest.raises(InputError, match=r"valid_flags \['good'\] are not among"):
        ingest(_cfg(pairs, tmp_path / "osisaf.nc", valid_flags=["good"]), tmp_path / "out.nc")
    assert not (tmp_path / "out.nc").exists()


def test_inverted_plain_mask_is_an_error_not_zero_coverage(pairs, tmp_path):
    _osisaf_like(tmp_path / "osisaf.nc", pairs)
    ds = xr.load_dataset(tmp_path / "osisaf.nc")
    ds["status_flag"] = ds["status_flag"] * 0
    ds["status_flag"].attrs = {}
    ds.to_netcdf(tmp_path / "plain.nc")   # 0 everywhere = "valid" in the product, "invalid" as a plain mask
    with pytest.raises(InputError, match=r"plain\.nc.*status_flag.*inverted"):
        ingest(_cfg(pairs, tmp_path / "plain.nc", valid_flags=None), tmp_path / "out.nc")


def test_file_on_other_grid_without_regrid_names_the_fix(pairs, tmp_path):
    _osisaf_like(tmp_path / "osisaf.nc", pairs)
    cfg = _cfg(pairs, tmp_path / "osisaf.nc").model_copy(update={"regrid": None})
    with pytest.raises(InputError, match=r"\(32, 32\) does not match.*ingest\.regrid"):
        ingest(cfg, tmp_path / "out.nc")


def test_flag_masks_bits():
    var = xr.DataArray(np.array([0, 1, 2, 3, 4, 6]), name="status", attrs={"flag_masks": [1, 2, 4],
                                                                           "flag_meanings": "land lake filtered"})
    np.testing.assert_array_equal(valid_from_mask("f.nc", var, ["filtered"]), [1, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(valid_from_mask("f.nc", var, ["lake", "filtered"]), [1, 0, 1, 0, 1, 1])


def test_nearest_and_mean_on_a_shifted_coarser_source():
    plane = ModelPlane(x=(np.arange(4) + 0.5) * 10.0, y=(np.arange(3) + 0.5) * 10.0, dx=10.0, crs=None)
    sx, sy = np.meshgrid((np.arange(2) + 0.5) * 20.0, (np.arange(2) + 0.5) * 15.0)   # 20 × 15 m source cells
    values = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    r = Regridder(sx, sy, plane)
    v, seen, _ = r.nearest(values, np.ones_like(values, bool))
    assert seen.all()
    np.testing.assert_array_equal(v[0, ::2], [[1, 1, 2, 2], [3, 3, 4, 4]])   # row 1 is equidistant: either
    v, seen, _ = r.mean(values, np.ones_like(values, bool))
    # source centres (10, 7.5), (30, 7.5), (10, 22.5), (30, 22.5) fall in model cells (0, 1), (0, 3), (2, 1), (2, 3)
    assert seen[0].sum() == 4 and v[0, 0, 1] == 1.0 and v[0, 2, 3] == 4.0
