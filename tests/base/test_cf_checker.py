"""Every kind of NetCDF file icecorr writes passes the IOOS CF checker (cf:1.10) with no high-priority failure, and
every final product is compressed NetCDF4 (issue 16, "CF everywhere"). The files are made small, each by the code
path its verb runs: pair files (`generate`, `prepare`), trajectories and restart files (`couple`, `emulate`),
`correct`'s output, observation files (`observations synth`/`ingest`), `metrics.nc` (`evaluate`), the 4D-Var
analysis (`assimilate`) and the cyclone benchmark. (The Fortran kit files are raw binary, not NetCDF.)"""
from __future__ import annotations

import json
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from icecorr.base.config import load_config
from tests.helpers.cf_check import NetworkUsed, cf_errors, cf_issues, format_issues
from tests.helpers.paths import CONFIGS

pytestmark = pytest.mark.slow


def _generate(out: Path) -> list[Path]:
    from training.data.config import TwinConfig
    from training.data.generate import run_generate

    cfg = TwinConfig.model_validate({"grid": {"nx": 16, "ny": 16, "dx": 32_000.0}, "generate": {
        "run_days": 2.0, "spinup_days": 0.5, "seeds": {"train": [11], "val": [], "test": [12]}}})
    return run_generate(cfg, out / "generate", progress=False)


def _prepare(out: Path) -> list[Path]:
    from training.data.config import PrepareRunConfig
    from training.data.prepare import run_prepare
    from tests.training.data.test_prepare import DX, N, write_nextsim_files

    (out / "nextsim").mkdir()
    state, forcing = write_nextsim_files(out / "nextsim")
    cfg = load_config(PrepareRunConfig, CONFIGS / "prepare_nextsim_example.yaml", [
        f"grid.nx={N}", f"grid.ny={N}", f"grid.dx={DX}", f"prepare.state_files={json.dumps([str(p) for p in state])}",
        f"prepare.forcing_files={json.dumps([str(forcing)])}",
        'prepare.splits={"train": ["2018-01-01T00:00", "2018-01-03T00:00"], '
        '"val": ["2018-01-03T12:00", "2018-01-05T00:00"]}'])
    return run_prepare(cfg, out / "prepare")


def _runs(out: Path) -> dict[str, list[Path]]:
    """couple (float32, forecast and correction written, restart files), emulate and correct on a pair file."""
    from coupling.config import CorrectConfig, CoupleConfig
    from coupling.correct import run_correct
    from coupling.couple import run_couple
    from coupling.emulate import run_emulate
    from coupling.forcing import FileForcing
    from tests.mpi_scripts import case
    from tests.mpi_scripts.pairs import make_pair_file
    from tests.mpi_scripts.tiny import tiny_corrector

    options = {"write_forecast": True, "write_correction": True}
    cfg = CoupleConfig(members=2, n_steps=2, start_indices=[0, 1], restart_interval=1,
                       output_options={**options, "precision": "float32"})
    couple = run_couple(cfg, case.initial_state(), case.forcing(16, 12), out / "couple.nc", comm=None,
                        grid=case.grid(), corrector=tiny_corrector())
    pairs = make_pair_file(out / "inputs" / "pairs.nc", n_time=4)
    emulate = run_emulate(CoupleConfig(members=2, n_steps=2, start_indices=[0, 1]), pairs, FileForcing(pairs),
                          out / "emulate.nc", comm=None, corrector=tiny_corrector(mode="emulator"))
    correct = run_correct(CorrectConfig(members=2, chunk_size=2, output_options=options), pairs,
                          out / "correct.nc", comm=None, corrector=tiny_corrector())
    return {"couple trajectory": couple, "restart": sorted(out.glob("couple.restart.step*.nc")),
            "emulate trajectory": emulate, "correct": [correct], "pairs for evaluate": [pairs]}


def _correct_user(out: Path) -> Path:
    """`icecorr correct` on CICE-like forecast files (correct.inputs): init_time × lead_time × member on the user's
    polar-stereographic grid, land as _FillValue."""
    from tests.coupling.test_correct_user_forecasts import correct, write_inputs

    folder = out / "inputs" / "user_forecasts"
    folder.mkdir(parents=True)
    write_inputs(folder)
    return correct(folder, members=2, out="../../correct_user.nc")


def _observations(out: Path, pairs: Path) -> list[Path]:
    from training.data.observation_config import IngestConfig
    from training.data.observations import ingest, synthesize

    synthesize(pairs, out / "obs_synth.nc")
    p = xr.load_dataset(pairs)
    user = out / "inputs" / "user_obs.nc"
    xr.Dataset({"ice_conc": (("time", "yc", "xc"), 100 * p["reference_sic"].values, {"units": "%"})},
               coords={"time": p["time"].values + np.timedelta64(12, "h")}).to_netcdf(user)
    ingest(IngestConfig.model_validate({
        "pairs": str(pairs), "files": [str(user)], "dims": {"time": "time", "y": "yc", "x": "xc"},
        "variables": {"sic": {"name": "ice_conc", "units": "%", "error_std": 0.05}}}), out / "obs_ingest.nc")
    return [out / "obs_synth.nc", out / "obs_ingest.nc"]


def _assimilate(out: Path) -> Path:
    from training.assimilation.runner import main
    from training.data.observation_config import ObservationConfig
    from training.data.observations import synthesize
    from tests.training.assimilation.test_assimilate import write_emulator_twin

    folder = out / "inputs" / "assimilate"
    folder.mkdir(parents=True)
    ckpt, truth = write_emulator_twin(folder)
    obs = folder / "obs.nc"
    synthesize(truth, obs, ObservationConfig(seed=3, missing_day_probability=0.0))
    cfg = folder / "a.yaml"
    cfg.write_text(f"assimilate:\n  checkpoint: {ckpt}\n  observations: {obs}\n  truth: {truth}\n"
                   f"  start: '2001-01-02T00:00'\n  window_days: 1\n  minimizer: {{max_iterations: 2}}\n")
    assert main([str(cfg), "--out", str(out / "assimilate")]) == 0
    return out / "assimilate" / "analysis.nc"


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> dict[str, list[Path]]:
    """{output kind: its files}, all made in one folder (about 20 s)."""
    from coupling.cyclone import run_cyclone
    from fortran_stub.config import CoarsePhysicsConfig, GridConfig
    from training.evaluation.config import EvaluateConfig
    from training.evaluation.evaluate import run_evaluate

    out = tmp_path_factory.mktemp("products")
    (out / "inputs").mkdir()
    kinds = {"generate pairs": _generate(out), "prepare pairs": _prepare(out)}
    kinds["prepare reference"] = [out / "prepare" / "reference.nc"]
    kinds["correct user forecasts"] = [_correct_user(out)]
    kinds.update(_runs(out))
    pairs = kinds.pop("pairs for evaluate")[0]
    run_evaluate({"coupled": kinds["couple trajectory"]}, pairs, out / "evaluate",
                 config=EvaluateConfig(plots=False))
    kinds["evaluate metrics"] = [out / "evaluate" / "metrics.nc"]
    kinds["observations"] = _observations(out, kinds["generate pairs"][0])
    kinds["assimilate analysis"] = [_assimilate(out)]
    kinds["cyclone benchmark"] = [run_cyclone(GridConfig(nx=16, ny=16), CoarsePhysicsConfig(), out / "cyclone",
                                              days=0.5, output_every_hours=12)]
    return kinds


KINDS = ("generate pairs", "prepare pairs", "prepare reference", "couple trajectory", "restart", "emulate trajectory",
         "correct", "correct user forecasts", "observations", "evaluate metrics", "assimilate analysis", "cyclone benchmark")


@pytest.mark.parametrize("kind", KINDS)
def test_every_output_kind_has_no_cf_error(products, kind):
    paths = products[kind]
    assert paths and all(p.is_file() for p in paths), paths
    for path in paths:
        errors = cf_errors(path)
        assert not errors, format_issues(errors, path)


FINAL_FLOAT32 = ("generate pairs", "prepare reference", "couple trajectory", "correct user forecasts", "observations")


@pytest.mark.parametrize("kind", KINDS)
def test_final_products_are_compressed_netcdf4(products, kind):
    """NetCDF4 with zlib on every field; float32 where the run asks for it (pair files by default, trajectories with
    `output_options.precision: float32`); no `.partial` file is left beside a complete trajectory."""
    for path in products[kind]:
        assert not Path(f"{path}.partial").exists()
        with netCDF4.Dataset(path) as nc:
            assert nc.data_model == "NETCDF4", (path.name, nc.data_model)
            fields = [v for v in nc.variables.values() if v.ndim >= 2 and v.dtype.kind == "f"]
            assert fields, path.name
            for var in fields:
                assert var.filters()["zlib"], (path.name, var.name)
                # latitude/longitude keep float64: coordinates, not fields
                if kind in FINAL_FLOAT32 and not var.name.startswith("obs_error") and var.name not in ("lat", "lon"):
                    assert var.dtype == np.float32, (path.name, var.name, var.dtype)


def test_the_checker_reports_errors_of_a_broken_file(tmp_path):
    """A string-valued coordinate variable, a time without standard_name or units, and an unknown standard_name."""
    path = tmp_path / "bad.nc"
    xr.Dataset({"sic": (("time", "model"), np.zeros((2, 2)), {"standard_name": "no_such_name", "units": "1"})},
               coords={"model": ["a", "b"], "time": ("time", [0.0, 1.0])}).to_netcdf(path)
    text = format_issues(cf_errors(path), path)
    assert "bad.nc:" in text and "[high]" in text
    assert "no_such_name" in text
    assert "strict_monotonicity" in text  # the check that meets the string coordinate raises
    assert all(i.priority in ("high", "medium") for i in cf_issues(path, "medium"))


def test_the_checker_never_uses_the_network(tmp_path):
    """A file naming another standard-name table version makes the checker try to download it: the helper refuses
    the connection and says so, instead of depending on the network."""
    path = tmp_path / "vocabulary.nc"
    xr.Dataset({"sic": (("y",), np.zeros(2), {"standard_name": "sea_ice_area_fraction", "units": "1"})},
               attrs={"Conventions": "CF-1.10", "standard_name_vocabulary": "CF Standard Name Table v70"}
               ).to_netcdf(path)
    with pytest.raises(NetworkUsed, match="tried to reach"):
        cf_errors(path)
