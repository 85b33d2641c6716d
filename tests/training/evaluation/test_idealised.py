"""`python -m training.evaluation.idealised` on a tiny box (8×8 cells, truth 16×16, 3 steps): the analytic cases,
the reference of the calm case, the scores of a perfect run, the whole command and its bad-input errors."""
from __future__ import annotations

import json

import netCDF4
import numpy as np
import pytest
import xarray as xr

from coupling.cyclone import CYCLONE_RADIUS, CYCLONE_V0, cyclone_centre
from fortran_stub.config import GridConfig
from icecorr.base.errors import InputError
from icecorr.base.variables import FORCING_VARIABLES, ML_VARIABLES, STEP_SECONDS
from tests.mpi_scripts.tiny import tiny_checkpoint
from training.evaluation.idealised import (
    case_fingerprint,
    main,
    reference_files,
    twin_config,
)
from training.evaluation.idealised_cases import (
    CASES,
    WALL_WIND,
    WINTER,
    AnalyticForcing,
    get_case,
)
from training.evaluation.idealised_scores import score_case

TINY = GridConfig(nx=8, ny=8, dx=16_000.0)
DAYS = 1.5  # 3 steps of 12 h


def test_cyclone_case_is_the_benchmark_with_winter_thermodynamics():
    grid = GridConfig(nx=64, ny=64, dx=8_000.0)  # fine enough to resolve the 100 km peak
    case = CASES["mehlmann_cyclone"]
    t = 2 * STEP_SECONDS
    f = case.forcing(grid, t)
    assert set(f) == set(FORCING_VARIABLES)
    speed = np.hypot(f["uas"], f["vas"])
    x = (np.arange(grid.nx) + 0.5) * grid.dx
    iy, ix = np.unravel_index(np.argmin(speed), speed.shape)
    cx, cy = cyclone_centre(grid, t)
    assert abs(x[ix] - cx) <= grid.dx and abs(x[iy] - cy) <= grid.dx  # the calm eye sits at the centre
    assert speed.max() == pytest.approx(CYCLONE_V0 / np.e, rel=0.02)  # 30/e m/s at r = R
    r = np.hypot(*np.meshgrid(x - cx, x - cy))
    assert r.flat[np.argmax(speed)] == pytest.approx(CYCLONE_RADIUS, abs=grid.dx)  # the peak at r = R
    for name, value in WINTER.items():
        assert np.all(f[name] == value)
    assert WINTER["tas"] < 260.0 and WINTER["rsds"] == 0.0 and WINTER["prsn"] == 0.0
    state = case.initial(grid)
    assert np.all(state["sic"] == 1.0) and np.all(state["siu"] == 0.0) and np.all(state["snt"] == 0.0)
    assert state["sit"].min() > 0.29 and state["sit"].max() < 0.311


def test_wall_and_calm_cases():
    wall = CASES["uniform_wind_wall"].forcing(TINY, 3 * STEP_SECONDS)
    assert np.all(wall["uas"] == WALL_WIND) and np.all(wall["vas"] == 0.0)
    assert np.all(wall["uo"] == 0.0) and np.all(wall["vo"] == 0.0)
    start = CASES["uniform_wind_wall"].initial(TINY)
    assert all(np.ptp(start[v]) == 0.0 for v in ML_VARIABLES) and np.all(start["siu"] == 0.0)
    calm = CASES["calm"]
    for k in range(3):
        f = AnalyticForcing(calm, TINY).truth_at(k)
        assert all(np.all(f[v] == 0.0) for v in ("uas", "vas", "uo", "vo"))
        assert f["tas"][0, 0] == WINTER["tas"]
    with pytest.raises(InputError, match="unknown idealised case 'storm'.*mehlmann_cyclone"):
        get_case("storm")
    cfg = twin_config(TINY, DAYS, 2)  # --reuse tells the cases (and their definitions) apart
    assert len({case_fingerprint(c, cfg) for c in CASES.values()}) == len(CASES)


@pytest.fixture(scope="module")
def calm_reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calm")
    reference_files(CASES["calm"], twin_config(TINY, DAYS, 2), folder)
    return folder


def test_calm_reference_stays_at_rest_and_keeps_its_volume(calm_reference):
    ref = xr.load_dataset(calm_reference / "reference.nc")
    assert ref.sizes["time"] == 4 and ref.attrs["idealised_case"] == "calm"
    assert float(np.abs(ref["siu"]).max()) < 1e-4 and float(np.abs(ref["siv"]).max()) < 1e-4
    volume = (ref["sic"] * ref["sit"]).mean(("y", "x")).values
    assert np.all(np.abs(volume / volume[0] - 1.0) < 0.01)  # only slow freezing
    assert np.allclose(ref["sit"][-1] - ref["sit"][0], float((ref["sit"][-1] - ref["sit"][0]).mean()), atol=2e-3)
    with xr.open_dataset(calm_reference / "pairs.nc") as pairs:
        assert {"initial_sic", "forecast_sit", "reference_siu", "tas_t0", "uas_t1", "mask"} <= set(pairs.variables)
    with xr.open_dataset(calm_reference / "forcing.nc") as forcing:
        assert forcing.sizes["time"] == 4 and float(np.abs(forcing["uas"]).max()) == 0.0
    for name in ("pairs.nc", "reference.nc", "forcing.nc"):  # CF: no fill value on coordinates
        with netCDF4.Dataset(calm_reference / name) as nc:
            assert all("_FillValue" not in nc[c].ncattrs() for c in ("time", "y", "x")), name


def test_perfect_run_scores_zero(calm_reference):
    ref = xr.load_dataset(calm_reference / "reference.nc")
    coarse = ref.copy(deep=True)
    coarse["sit"] = coarse["sit"] + 0.01
    coarse["siu"] = coarse["siu"] + 0.001
    runs = {"coarse": coarse.expand_dims(member=1, axis=1), "emulator perfect": ref.expand_dims(member=[0, 1])}
    out = score_case(ref, runs, "coarse")
    assert out["leads_hours"] == [12, 24]
    perfect = out["scores"]["emulator perfect"]
    assert all(perfect["rmse"][v][h] == 0.0 for v in ML_VARIABLES for h in ("12", "24"))
    assert perfect["ratio"]["sit"]["12"] == 0.0 and perfect["ratio"]["siu"]["24"] == 0.0
    assert out["scores"]["coarse"]["rmse"]["sit"]["12"] == pytest.approx(0.01)
    assert perfect["nan_count"] == 0 and perfect["hard_violations"] == {}
    assert perfect["volume_drift"]["24"] == 0.0
    assert out["verdict"] == {"emulator perfect": False}  # sic is exact in both: a tie does not beat


def test_command_end_to_end_and_reuse(tmp_path, capsys):
    """An emulator and a hybrid: a residual corrector coupled to the free-drift coarse model (`--hybrid-physics
    rheology_on=false`)."""
    ckpt = tiny_checkpoint(tmp_path / "emu.pt", ny=8, nx=8, mode="emulator")
    residual = tiny_checkpoint(tmp_path / "res.pt", ny=8, nx=8, mode="residual")
    args = ["--out", str(tmp_path / "out"), "--emulator", f"tiny={ckpt}", "--cases", "calm,uniform_wind_wall",
            "--hybrid", f"fd={residual}", "--hybrid-physics", "rheology_on=false",
            "--nx", "8", "--ny", "8", "--days", str(DAYS), "--members", "2"]
    assert main(args) == 0
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert set(scores["cases"]) == {"calm", "uniform_wind_wall"}
    assert scores["hybrid_physics"] == ["rheology_on=false"] and set(scores["hybrids"]) == {"fd"}
    wall = scores["cases"]["uniform_wind_wall"]
    assert set(wall["scores"]) == {"coarse", "emulator tiny", "hybrid fd"}
    assert wall["scores"]["emulator tiny"]["members"] == 2 and wall["scores"]["hybrid fd"]["members"] == 2
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## calm" in report and "emulator tiny beats coarse at 12 h for every variable:" in report
    assert "rheology_on=false" in report and "hybrid fd beats coarse at 12 h" in report
    with xr.open_dataset(tmp_path / "out" / "calm" / "emulator_tiny.nc") as ds:
        assert ds.sizes["member"] == 2 and ds.sizes["time"] == 4
    folder = tmp_path / "out" / "uniform_wind_wall"
    with xr.open_dataset(folder / "hybrid_fd.nc") as hybrid, xr.open_dataset(folder / "coarse.nc") as coarse:
        assert hybrid.sizes["member"] == 2 and hybrid.sizes["time"] == 4
        # the hybrid's physics is the free-drift model: under 15 m/s it runs far faster than the plastic mEVP ice
        assert float(abs(hybrid["siu"].isel(time=1)).max()) > 1.5 * float(abs(coarse["siu"].isel(time=1)).max())
    capsys.readouterr()
    assert main(args + ["--reuse"]) == 0
    assert capsys.readouterr().out.count("reusing") == 4  # pairs and coarse of both cases


@pytest.mark.parametrize("bad, message", [
    (["--cases", "calm,storm"], "field '--cases': unknown idealised case 'storm'"),
    (["--emulator", "x=/nonexistent/emu.pt"], "checkpoint /nonexistent/emu.pt: no such file"),
    (["--emulator", "no-label.pt"], "field '--emulator'"),
    (["--hybrid-physics", "rheology_on"], "field '--hybrid-physics': 'rheology_on': expected KEY=VALUE"),
    (["--hybrid-physics", "no_such_knob=1"], "field '--hybrid-physics': no_such_knob: unknown key"),
    (["--hybrid-physics", "p_star=-3"], "field '--hybrid-physics': p_star: Input should be greater than or equal to 0"),
])
def test_bad_input_is_one_line(tmp_path, capsys, bad, message):
    assert main(["--out", str(tmp_path / "out"), "--nx", "8", "--ny", "8", *bad]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_checkpoint_for_another_grid(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "emu16.pt", ny=16, nx=16, mode="emulator")
    assert main(["--out", str(tmp_path / "out"), "--nx", "8", "--ny", "8", "--emulator", f"e={ckpt}"]) == 2
    err = capsys.readouterr().err
    assert f"file {ckpt}, field 'grid': the checkpoint was trained on 16×16" in err
