"""Bad cases of issue 16 ("your model, your data") that no other test drove through the command line: `evaluate`
scores `correct`'s output (every record a 12 h forecast, so the lead repeats) and two ensembles in one call (was
"repeated lead times" and "'rank' not present in all datasets"); `couple`/`emulate` accept a pair file whose units
are other spellings of the table's ('m/s' for m s-1, '1' for kg kg-1: compared by UDUNITS, not as strings)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import xarray as xr

from coupling.checks import expected_units
from icecorr.cli import main
from training.evaluation.metrics_file import read_metrics_netcdf
from tests.mpi_scripts.pairs import make_pair_file
from tests.mpi_scripts.tiny import tiny_checkpoint

#: another UDUNITS spelling of each variable's table unit
SPELLED = {"initial_siu": "m/s", "initial_siv": "meter second-1", "huss_t0": "1", "huss_t1": "kg/kg",
           "uas_t0": "m/s", "tas_t0": "kelvin", "rsds_t0": "W/m2", "initial_sic": "fraction"}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """A small pair file with CF units on every variable, as `generate`/`prepare` write them."""
    tmp = tmp_path_factory.mktemp("issue16")
    ds = xr.load_dataset(make_pair_file(tmp / "raw.nc", n_time=4))
    for name in ds.data_vars:
        if expected_units(name) is not None and name not in ("mask", "run"):
            ds[name].attrs["units"] = expected_units(name)
    ds.to_netcdf(tmp / "pairs.nc")
    return tmp / "pairs.nc"


def test_evaluate_scores_correct_outputs_of_two_ensembles_in_one_call(pairs, tmp_path, capsys):
    runs = []
    for seed in (1, 2):
        out = tmp_path / f"corrected{seed}.nc"
        argv = ["correct", pairs, "-o", out, "--members", "2", "--seed", seed, "--no-correction"]
        assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
        runs.append(f"ens{seed}={out}")
    rc = main(["evaluate", *runs, "--reference", str(pairs), "-o", str(tmp_path / "report")])
    assert rc == 0, capsys.readouterr().err
    with open(tmp_path / "report" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    for label in ("ens1", "ens2"):  # both ensembles scored, at the one lead of a 12 h correction
        crps = [r for r in rows if r["model"] == label and r["metric"] == "crps"]
        assert crps and {float(r["lead_hours"]) for r in crps} == {12.0}, label
    metrics = read_metrics_netcdf(tmp_path / "report" / "metrics.nc")
    assert {"ens1", "ens2"} <= set(metrics["model"].values) and "rank_histogram" in metrics


@pytest.mark.parametrize("verb", ["couple", "emulate"])
def test_couple_and_emulate_accept_other_spellings_of_the_units(pairs, tmp_path, capsys, verb):
    ds = xr.load_dataset(pairs)
    for name, units in SPELLED.items():
        ds[name].attrs["units"] = units
    spelled = tmp_path / "spelled.nc"
    ds.to_netcdf(spelled)
    ck = tiny_checkpoint(tmp_path / "ck.pt", mode="emulator" if verb == "emulate" else "residual")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"grid: {{nx: 16, ny: 16, dx: 16000.0}}\ninitial: {spelled}\n"
                   f"couple: {{members: 2, n_steps: 1, output: {tmp_path / 'r.nc'}, checkpoint: {ck}}}\n")
    assert main([verb, str(cfg)]) == 0, capsys.readouterr().err
    out = xr.load_dataset(tmp_path / "r.nc")
    assert out.sizes["time"] == 2 and out["siu"].attrs["units"] == "m s-1"
