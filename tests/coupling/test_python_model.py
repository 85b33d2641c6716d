"""A Python model named in the config (`couple.model`), run through the command line: the worked example
examples/python_model/free_drift.py, in one process and under mpiexec (physics ranks are protocol clients)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import xarray as xr

from tests.helpers.mpirun import run_mpi
from tests.helpers.paths import REPO

EXAMPLE = REPO / "examples" / "python_model"
VARS = ["sic", "sit", "snt", "siu", "siv"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    from tests.mpi_scripts.pairs import make_pair_file

    tmp = tmp_path_factory.mktemp("python_model")
    return make_pair_file(tmp / "pairs.nc", n_time=6)


def config(tmp, pairs, name: str, **couple) -> str:
    extra = "".join(f", {k}: {v}" for k, v in couple.items())
    path = tmp / f"{name}.yaml"
    path.write_text(f"grid: {{nx: 16, ny: 16, dx: 16000.0}}\ninitial: {pairs}\n"
                    f"couple: {{model: 'free_drift:FreeDrift', model_options: {{wind_factor: 0.03}}, members: 2, "
                    f"n_steps: 3, output: {tmp / name}.nc, output_options: {{precision: float64}}{extra}}}\n")
    return str(path)


def plain_run(pairs, steps: int) -> dict[str, np.ndarray]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        from free_drift import FreeDrift
    finally:
        sys.path.remove(str(EXAMPLE))
    from coupling.forcing import open_forcing
    from fortran_stub.config import GridConfig

    ds = xr.load_dataset(pairs)
    model = FreeDrift(GridConfig(nx=16, ny=16, dx=16_000.0), wind_factor=0.03)
    model.set_state({v: ds[f"initial_{v}"].values[0] for v in VARS})
    forcing = open_forcing(str(pairs))
    traj = [model.get_state()]
    for k in range(steps):
        model.step(*forcing.pair(k))
        traj.append(model.get_state())
    return {v: np.stack([t[v].values for t in traj]) for v in VARS}


def test_config_model_runs_through_the_cli_and_equals_the_plain_model(tmp_path, pairs, monkeypatch, capsys):
    from icecorr.cli.main import main

    monkeypatch.syspath_prepend(str(EXAMPLE))
    assert main(["couple", config(tmp_path, pairs, "one")]) == 0
    ds = xr.load_dataset(tmp_path / "one.nc")
    ref = plain_run(pairs, 3)
    for v in VARS:   # zero corrector: the coupled run is the model's own, bit for bit
        for k in range(2):
            np.testing.assert_array_equal(ds[v].values[:, k], ref[v], err_msg=v)
    assert np.abs(ds["siu"].values[-1]).max() > 0.01   # it drifts


def test_bad_model_names_and_options_are_input_errors(tmp_path, pairs, monkeypatch, capsys):
    from icecorr.cli.main import main

    monkeypatch.syspath_prepend(str(EXAMPLE))
    assert main(["couple", config(tmp_path, pairs, "a"), "couple.model=free_drift:Nope"]) == 2
    assert "field 'couple.model': 'free_drift:Nope': module 'free_drift' has no attribute 'Nope'" in \
        capsys.readouterr().err
    assert main(["couple", config(tmp_path, pairs, "b"), "couple.model_options={drag: 2}"]) == 2
    assert "field 'couple.model_options': free_drift:FreeDrift(grid, **{'drag': 2}):" in capsys.readouterr().err
    assert main(["couple", config(tmp_path, pairs, "c"), "couple.model=nosuchmodel"]) == 2
    assert "no entry point of that name is in the group 'icecorr.models'" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.nc"))


@pytest.mark.mpi
def test_config_model_under_mpiexec_equals_one_process_with_restarts(tmp_path, pairs, monkeypatch):
    from icecorr.cli.main import main

    monkeypatch.syspath_prepend(str(EXAMPLE))
    assert main(["couple", config(tmp_path, pairs, "one", restart_interval=1, initial_perturbation=0.05)]) == 0
    res = run_mpi(3, ["-m", "icecorr.cli", "couple", config(tmp_path, pairs, "mpi", restart_interval=1,
                                                             initial_perturbation=0.05)],
                  cwd=str(tmp_path), env={"PYTHONPATH": str(EXAMPLE)}, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    one, mpi = xr.load_dataset(tmp_path / "one.nc"), xr.load_dataset(tmp_path / "mpi.nc")
    for v in VARS:
        np.testing.assert_array_equal(mpi[v].values, one[v].values, err_msg=v)
    assert not np.array_equal(one["sic"].values[0, 0], one["sic"].values[0, 1])   # perturbed members
    # continue from the step-2 restart: bit-identical (the clock travels as a restart extra)
    assert main(["couple", config(tmp_path, pairs, "again"), "--restart", str(tmp_path / "one.restart.step00002.nc"),
                 "couple.restart_interval=1", "couple.initial_perturbation=0.05"]) == 0
    again = xr.load_dataset(tmp_path / "again.nc")
    np.testing.assert_array_equal(again["sic"].values[-1], one["sic"].values[-1])


def test_the_builtin_model_and_the_example_implement_the_protocol_class(monkeypatch):
    from coupling.bridge import CoarseModel
    from coupling.model_protocol import CoupledModel, load_model_class
    from tests.mpi_scripts import case

    monkeypatch.syspath_prepend(str(EXAMPLE))
    assert isinstance(CoarseModel(case.grid()), CoupledModel)
    assert isinstance(load_model_class("free_drift:FreeDrift")(case.grid()), CoupledModel)
    assert load_model_class("coupling.bridge:CoarseModel") is CoarseModel
