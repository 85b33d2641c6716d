"""`icecorr correct` on the user's own forecast files (`correct.inputs`): a hand-made CICE-like file (aice in %, hi
cell-mean in cm, hs in cm, uvel/vvel in cm s-1 at cell centres, land as _FillValue, 2-D lat/lon, a polar-stereographic
grid_mapping, y decreasing, 6-hourly leads 0…36 h) and its forcing, corrected by a corrector with a known correction
into init_time × lead_time × member on the user's grid; clear errors naming file, variable and mapping key."""
from __future__ import annotations

import textwrap
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from coupling.config import CorrectConfig
from coupling.correct_user import run_correct_user
from icecorr.base.errors import InputError
from icecorr.inputs.reference import centre_to_faces
from tests.helpers.known_corrector import FACTOR, KnownCorrection
from tests.mpi_scripts.tiny import UNITS, tiny_corrector

NY, NX, DX_KM = 10, 12, 25.0
INITS = pd.to_datetime(["2018-01-01T00:00", "2018-01-02T00:00"])
LEADS_H = np.arange(0, 42, 6)                                   # 0, 6, …, 36 h
WRITTEN_H = [12, 18, 24, 30, 36]                                # L ≥ 12 h with L − 12 h present
FILL = -9999.0
VARS = ["sic", "sit", "snt", "siu", "siv"]
MAPPING = {"sic": {"name": "aice", "units": "%"}, "sit": {"name": "hi", "units": "cm"},
           "snt": {"name": "hs", "units": "cm"}, "siu": {"name": "uvel", "units": "cm s-1"},
           "siv": {"name": "vvel", "units": "cm/s"}}
FORCING = {"uas": ("u10", "m s-1", 5.0), "vas": ("v10", "m s-1", -3.0), "tas": ("t2m", "degC", -10.0),
           "huss": ("q2m", "g kg-1", 1.0), "rsds": ("sw", "W m-2", 50.0), "rlds": ("lw", "W m-2", 200.0),
           "prsn": ("snow", "kg m-2 s-1", 1e-6), "uo": ("uo", "cm s-1", 5.0), "vo": ("vo", "m s-1", 0.0)}


def land_in_file_rows() -> np.ndarray:
    """Land (y, x) in the file's row order (row 0 is the northernmost: y decreases)."""
    land = np.zeros((NY, NX), bool)
    land[0, :4] = True          # the north-west corner
    land[6:, 10:] = True        # a block at the south-east
    return land


def file_fields() -> dict[str, np.ndarray]:
    """(init, lead, y, x) float64 in file units and file row order, NaN on land."""
    i = np.arange(len(INITS))[:, None, None, None]
    h = LEADS_H[None, :, None, None].astype(float)
    yy, xx = np.meshgrid(np.arange(NY), np.arange(NX), indexing="ij")
    aice = 80 + 1.0 * i + 0.2 * h + 0.5 * xx + 0 * yy               # %
    out = {"aice": aice, "hi": aice / 100 * (120 + 1.0 * h),          # cm, cell mean
           "hs": 5 + 0.1 * h + 0.0 * xx + 0 * i, "uvel": 2 + 0.1 * h + 0.1 * yy + 0 * i + 0 * xx,
           "vvel": -1 + 0.05 * xx + 0.02 * h + 0 * i + 0 * yy}
    land = land_in_file_rows()
    return {k: np.where(land, np.nan, np.broadcast_to(v, (len(INITS), len(LEADS_H), NY, NX))) for k, v in out.items()}


def grid_coords() -> dict:
    x = (np.arange(NX) - NX / 2) * DX_KM
    y = (NY - 1 - np.arange(NY)) * DX_KM + 500.0                    # km, decreasing
    xx, yy = np.meshgrid(x, y)
    lat = 90 - np.hypot(xx, yy) / 111.0
    lon = np.degrees(np.arctan2(xx, -yy)) - 45
    return {"xc": ("xc", x, {"units": "km", "standard_name": "projection_x_coordinate", "axis": "X"}),
            "yc": ("yc", y, {"units": "km", "standard_name": "projection_y_coordinate", "axis": "Y"}),
            "TLAT": (("yc", "xc"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "TLON": (("yc", "xc"), lon, {"standard_name": "longitude", "units": "degrees_east"})}


CRS = {"grid_mapping_name": "polar_stereographic", "straight_vertical_longitude_from_pole": -45.0,
       "latitude_of_projection_origin": 90.0, "standard_parallel": 70.0, "false_easting": 0.0,
       "false_northing": 0.0}


def write_inputs(folder: Path, change=None) -> dict:
    """cice.nc (init_time × lead_time × yc × xc) and forcing.nc (6-hourly, dims t, yc, xc) in `folder`."""
    fields = file_fields()
    ds = xr.Dataset(coords={"init_time": INITS, "lead_time": pd.to_timedelta(LEADS_H, unit="h"), **grid_coords()})
    units = {"aice": "%", "hi": "cm", "hs": "cm", "uvel": "cm s-1", "vvel": "cm/s"}
    for name, values in fields.items():
        ds[name] = (("init_time", "lead_time", "yc", "xc"), values.astype(np.float32),
                    {"units": units[name], "grid_mapping": "crs", "coordinates": "TLAT TLON"})
    ds["crs"] = ((), np.int32(0), CRS)
    if change is not None:
        ds = change(ds)
    ds.to_netcdf(folder / "cice.nc", encoding={v: {"_FillValue": FILL} for v in ds.data_vars
                                               if ds[v].dtype.kind == "f"})
    times = pd.date_range("2017-12-31T18:00", "2018-01-03T18:00", freq="6h")
    f = xr.Dataset(coords={"t": times, **{k: v for k, v in grid_coords().items() if k in ("xc", "yc")}})
    land = land_in_file_rows()
    for model, (name, u, value) in FORCING.items():
        a = np.full((len(times), NY, NX), value) + 0.01 * np.arange(len(times))[:, None, None] * (model == "tas")
        if model == "uas":
            a = np.where(land, np.nan, a)   # NaN on land: replaced by the ocean mean
        f[name] = (("t", "yc", "xc"), a, {"units": u})
    f.to_netcdf(folder / "forcing.nc")
    return fields


def inputs_config(**extra) -> dict:
    return {"forecasts": {"files": ["cice.nc"], "variables": MAPPING, "thickness_is_mean": True,
                          "velocity_points": "centre",
                          "dims": {"init_time": "init_time", "lead_time": "lead_time", "y": "yc", "x": "xc"}},
            "forcing_files": ["forcing.nc"], "forcing": {k: {"name": n, "units": u} for k, (n, u, _) in FORCING.items()},
            "forcing_dims": {"time": "t", "y": "yc", "x": "xc"}, **extra}


def known_corrector(mask_hash=None):
    c = KnownCorrection(tiny_corrector(ny=NY, nx=NX, dx=DX_KM * 1000))
    if mask_hash is not None:
        c._inner.grid["mask_hash"] = mask_hash
    return c


def correct(folder: Path, members=3, out="corrected.nc", corrector=None, **cfg_extra) -> Path:
    cfg = CorrectConfig(members=members, chunk_size=4, inputs=inputs_config(**cfg_extra.pop("inputs", {})),
                        **cfg_extra)
    return run_correct_user(cfg, folder / out, base_dir=folder, comm=None,
                            corrector=corrector or known_corrector())


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    write_inputs(folder)
    return folder, correct(folder)


def model_rows(a: np.ndarray) -> np.ndarray:
    """File row order (north first) -> model order (south first, y increasing)."""
    return a[..., ::-1, :]


def test_leads_members_grid_and_land(corrected):
    folder, path = corrected
    ds = xr.load_dataset(path)
    assert ds["sic"].dims == ("init_time", "lead_time", "member", "y", "x")
    assert ds["forecast_sic"].dims == ("init_time", "lead_time", "y", "x")
    assert ds.sizes["member"] == 3 and ds.sizes["init_time"] == 2
    np.testing.assert_array_equal(ds["init_time"].values, INITS.values)
    assert list(ds["lead_time"].values / np.timedelta64(1, "h")) == WRITTEN_H
    ocean = model_rows(~land_in_file_rows())
    np.testing.assert_array_equal(ds["mask"].values, ocean.astype(np.int8))
    for v in VARS:  # land is _FillValue (NaN once decoded), the ocean has values
        assert np.isnan(ds[v].values[..., ~ocean]).all() and np.isfinite(ds[v].values[..., ocean]).all(), v
        assert np.isnan(ds[f"forecast_{v}"].values[..., ~ocean]).all(), v
    # the user's grid: x/y (km -> m, y increasing), lat/lon, the grid mapping
    src = xr.load_dataset(folder / "cice.nc")
    np.testing.assert_allclose(ds["x"].values, src["xc"].values * 1000)
    np.testing.assert_allclose(ds["y"].values, src["yc"].values[::-1] * 1000)
    np.testing.assert_allclose(ds["lat"].values, model_rows(src["TLAT"].values))
    np.testing.assert_allclose(ds["lon"].values, model_rows(src["TLON"].values))
    assert {k: ds["crs"].attrs[k] for k in CRS} == CRS
    assert ds["sic"].attrs["grid_mapping"] == "crs"
    assert ds.attrs["Conventions"] == "CF-1.10"


def test_forecast_is_the_mapped_input_and_members_the_known_correction(corrected):
    _, path = corrected
    ds = xr.load_dataset(path)
    raw = {k: model_rows(v) for k, v in file_fields().items()}
    ocean = model_rows(~land_in_file_rows())
    for li, lead in enumerate(WRITTEN_H):
        k = list(LEADS_H).index(lead)
        sic = raw["aice"][:, k] / 100                                  # % -> 1
        sit = raw["hi"][:, k] / 100 / sic                              # cm cell mean -> m per ice area
        snt = raw["hs"][:, k] / 100
        want = {"sic": sic, "sit": sit, "snt": snt}
        faces = [centre_to_faces(np.where(ocean, raw["uvel"][n, k] / 100, 0), np.where(ocean, raw["vvel"][n, k] / 100, 0),
                                 ocean) for n in range(len(INITS))]
        want["siu"] = np.stack([f[0] for f in faces])
        want["siv"] = np.stack([f[1] for f in faces])
        for v in VARS:
            got = ds[f"forecast_{v}"].values[:, li]
            np.testing.assert_allclose(got[:, ocean], want[v][:, ocean], rtol=1e-6, atol=1e-7, err_msg=f"{v} {lead}")
            for m in range(3):
                np.testing.assert_allclose(ds[v].values[:, li, m][:, ocean], (want[v] * (1 + FACTOR[v]))[:, ocean],
                                           rtol=1e-6, atol=1e-7, err_msg=f"{v} {lead} member {m}")
    np.testing.assert_allclose(ds["sit"].values[0, 0, 0][ocean], (1.2 + 0.01 * 12) * 1.05, rtol=1e-6)
    assert ds["sic"].attrs["units"] == "1" and ds["sit"].attrs["units"] == "m" and ds["siu"].attrs["units"] == "m s-1"
    assert "east face" in ds["siu"].attrs["comment"] and "north face" in ds["siv"].attrs["comment"]


def test_file_is_cf_netcdf4_float32_zlib(corrected):
    _, path = corrected
    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF4"
        for v in ("sic", "forecast_siv"):
            assert nc[v].dtype == np.float32 and nc[v].filters()["zlib"], v
            assert nc[v].coordinates == "lat lon" and nc[v].grid_mapping == "crs"
        for c in ("init_time", "lead_time", "member", "x", "y", "lat", "lon"):
            assert "_FillValue" not in nc[c].ncattrs(), c
        assert nc["member"].standard_name == "realization"
        assert nc["lead_time"].standard_name == "forecast_period" and nc["lead_time"].units == "hours"
        assert nc["init_time"].standard_name == "forecast_reference_time"
        assert nc["x"].standard_name == "projection_x_coordinate" and nc["x"].units == "m"
        assert list(nc["mask"].flag_values) == [0, 1] and nc["mask"].flag_meanings == "land ocean"
        assert nc["mask"].dtype == np.int8
    assert not list(path.parent.glob("*.tmp-*"))


def test_members_differ_with_a_diffusion_corrector_and_seeds_repeat(tmp_path):
    write_inputs(tmp_path)
    a = xr.load_dataset(correct(tmp_path, members=2, out="a.nc", corrector=tiny_corrector(ny=NY, nx=NX, dx=DX_KM * 1000)))
    b = xr.load_dataset(correct(tmp_path, members=3, out="b.nc", corrector=tiny_corrector(ny=NY, nx=NX, dx=DX_KM * 1000)))
    np.testing.assert_array_equal(a["sic"].values, b["sic"].values[:, :, :2])
    assert float(np.nanmax(b["sic"].std("member"))) > 1e-6


@pytest.mark.parametrize("change, inputs, field, words", [
    (lambda ds: ds.drop_vars("hs"), {}, "hs", ["missing (mapped to 'snt')",
                                               "correct.inputs.forecasts.variables.snt.name"]),
    (lambda ds: ds.assign(aice=ds["aice"].assign_attrs(units="1")), {}, "aice",
     ["units attribute '1' differs from the mapping's '%'", "correct.inputs.forecasts.variables.sic.units"]),
    (lambda ds: ds.assign(hi=ds["hi"].where((ds["xc"] != ds["xc"][6]) | (ds["yc"] != ds["yc"][5]))), {}, "hi",
     ["NaN/fill value(s) inside the ocean mask", "correct.inputs.forecasts.variables.sit.name"]),
    (None, {"forecasts": {**inputs_config()["forecasts"], "variables": {**MAPPING, "sic": {"name": "aice",
                                                                                           "units": "1"}}}},
     "aice", ["units attribute '%' differs from the mapping's '1'"]),
    (None, {"forcing_files": ["nowhere.nc"]}, "correct.inputs.forcing_files", ["file not found"]),
])
def test_bad_inputs_name_file_variable_and_mapping_key(tmp_path, change, inputs, field, words):
    write_inputs(tmp_path, change)
    with pytest.raises(InputError) as err:
        correct(tmp_path, inputs=inputs)
    assert err.value.field == field, str(err.value)
    for w in words:
        assert w in str(err.value), str(err.value)
    assert not (tmp_path / "corrected.nc").exists() and not list(tmp_path.glob("*.tmp-*"))


def test_wrong_units_after_conversion_and_missing_forcing_time(tmp_path):
    write_inputs(tmp_path, lambda ds: ds.assign(aice=ds["aice"].assign_attrs(units="1")))  # % labelled as 1
    one = {"forecasts": {**inputs_config()["forecasts"], "variables": {**MAPPING, "sic": {"name": "aice",
                                                                                         "units": "1"}}}}
    with pytest.raises(InputError, match="outside the plausible range.*variables.sic.name"):
        correct(tmp_path, inputs=one)
    write_inputs(tmp_path)
    xr.load_dataset(tmp_path / "forcing.nc").isel(t=slice(0, -2)).to_netcdf(tmp_path / "forcing.nc")
    with pytest.raises(InputError, match="no forcing at 2018-01-03T12:00"):
        correct(tmp_path)


def test_mask_against_the_checkpoint_and_mask_variable(tmp_path):
    from corrector.checkpoint import mask_hash

    write_inputs(tmp_path)
    with pytest.raises(InputError, match="land mask .* differs from the one the checkpoint"):
        correct(tmp_path, corrector=known_corrector(mask_hash(np.ones((NY, NX)))))
    ocean = model_rows(~land_in_file_rows())
    correct(tmp_path, corrector=known_corrector(mask_hash(ocean)), out="ok.nc")
    # a CF flag mask with 1 = land, and the same mask stored inverted without flags: read right / refused
    flags = lambda ds: ds.assign(lsm=(("yc", "xc"), land_in_file_rows().astype(np.int8),  # noqa: E731
                                      {"flag_values": np.array([0, 1], np.int8), "flag_meanings": "sea land"}))
    write_inputs(tmp_path, flags)
    out = xr.load_dataset(correct(tmp_path, out="flags.nc", inputs={"mask_variable": "lsm"}))
    np.testing.assert_array_equal(out["mask"].values, ocean.astype(np.int8))
    write_inputs(tmp_path, lambda ds: ds.assign(lsm=(("yc", "xc"), land_in_file_rows().astype(np.int8))))
    with pytest.raises(InputError, match="looks inverted.*correct.inputs.mask_variable"):
        correct(tmp_path, out="inv.nc", inputs={"mask_variable": "lsm"})


def test_one_process_only(tmp_path):
    class TwoRanks:
        def Get_size(self):
            return 2

    write_inputs(tmp_path)
    cfg = CorrectConfig(inputs=inputs_config())
    with pytest.raises(InputError, match="one process, not 2 MPI ranks"):
        run_correct_user(cfg, tmp_path / "c.nc", tmp_path, comm=TwoRanks(), corrector=known_corrector())


def _checkpoint(path: Path, ocean: np.ndarray) -> Path:
    from corrector.checkpoint import mask_hash, save_checkpoint

    c = tiny_corrector(ny=NY, nx=NX, dx=DX_KM * 1000)
    return save_checkpoint(path, model_state=c.model.state_dict(), ema_state=None, config=c.config,
                           normalization=c.normalization, grid={"ny": NY, "nx": NX, "dx": DX_KM * 1000,
                                                                "mask_hash": mask_hash(ocean)},
                           variables_units=dict(UNITS))


def test_through_the_cli(tmp_path, capsys):
    import yaml

    from icecorr.cli.main import main

    folder = tmp_path / "data"
    folder.mkdir()
    write_inputs(folder)
    ckpt = _checkpoint(tmp_path / "c.pt", model_rows(~land_in_file_rows()))
    config = folder / "correct.yaml"
    config.write_text(yaml.safe_dump({"correct": {"members": 2, "inputs": inputs_config()}}))
    out = tmp_path / "corrected.nc"
    assert main(["correct", "--config", str(config), "--checkpoint", str(ckpt), "-o", str(out)]) == 0
    ds = xr.load_dataset(out)
    assert ds.sizes["member"] == 2 and list(ds["lead_time"].values / np.timedelta64(1, "h")) == WRITTEN_H
    assert np.isfinite(ds["sic"].values[..., model_rows(~land_in_file_rows())]).all()
    capsys.readouterr()
    # no checkpoint: still an error (or --no-correction); both / neither source of forecasts: one error
    assert main(["correct", "--config", str(config), "-o", str(tmp_path / "x.nc")]) == 2
    assert "no corrector checkpoint" in capsys.readouterr().err
    assert main(["correct", str(out), "--config", str(config), "--checkpoint", str(ckpt), "-o",
                 str(tmp_path / "y.nc")]) == 2
    assert "both a pair file and correct.inputs" in capsys.readouterr().err
    empty = tmp_path / "empty.yaml"
    empty.write_text(textwrap.dedent("correct:\n  members: 2\n"))
    assert main(["correct", "--config", str(empty), "--checkpoint", str(ckpt), "-o", str(tmp_path / "z.nc")]) == 2
    assert "no forecasts: give either a pair file" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in ("x.nc", "y.nc", "z.nc"))
    assert main(["correct", "--config", str(config), "--no-correction", "-o", str(tmp_path / "plain.nc")]) == 0
    plain = xr.load_dataset(tmp_path / "plain.nc")
    np.testing.assert_array_equal(plain["sic"].values[:, :, 1], plain["forecast_sic"].values)
