"""`python -m training.evaluation.parameter_scan`: the coarse model's error with one parameter scaled."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from coupling.bridge import CoarseModel
from coupling.forcing import FileForcing
from coupling.pairs import initial_states_from_pairs
from fortran_stub.config import GridConfig
from icecorr.base.errors import InputError
from icecorr.base.variables import ML_VARIABLES
from training.data.config import TwinConfig
from training.data.generate import run_generate
from coupling.member_physics import scaled_physics
from training.evaluation.parameter_scan import main, scan


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    cfg = TwinConfig.model_validate({"grid": {"nx": 16, "ny": 16, "dx": 32_000.0},
                                     "generate": {"run_days": 3.0, "spinup_days": 0.5,
                                                  "seeds": {"train": [11, 12], "val": [], "test": []}}})
    return run_generate(cfg, tmp_path_factory.mktemp("scan") / "twin", progress=False)[0]


def test_scan_scores_the_uncorrected_model_with_the_scaled_parameter(pairs, tmp_path):
    result = scan(pairs, "p_star", [1.0, 2.0], [0, 2], 3)
    assert set(result) == {1.0, 2.0} and all(set(r) == set(ML_VARIABLES) for r in result.values())
    # factor 2: the same as running the model with 2 P* by hand from the same states and scoring it
    physics = scaled_physics(None, {"p_star": 2.0})
    assert physics.p_star == 2 * 27.5e3 and scaled_physics(None, {"thermo.k_snow": 0.5}).thermo.k_snow == 0.3096 / 2
    forcing = FileForcing(pairs)
    with xr.open_dataset(pairs) as ds:
        grid = GridConfig(nx=16, ny=16, dx=float(ds.attrs["grid_dx"]))
        reference = {v: ds[f"reference_{v}"].values for v in ML_VARIABLES}
    states = initial_states_from_pairs(pairs, [0, 2], ML_VARIABLES)
    sq = {v: [] for v in ML_VARIABLES}
    for s, state in zip([0, 2], states):
        model = CoarseModel(grid, physics)
        model.set_state(state)
        for k in range(3):
            model.step(*forcing.pair(s + k))
            got = model.get_state()
            for v in ML_VARIABLES:
                sq[v].append((got[v].values - reference[v][s + k]) ** 2)
    for v in ML_VARIABLES:
        assert result[2.0][v] == pytest.approx(float(np.sqrt(np.mean(sq[v]))), rel=1e-6)
    assert result[1.0]["siu"] != result[2.0]["siu"]


def test_bad_scans_are_refused_before_running(pairs, tmp_path):
    with pytest.raises(InputError, match=r"records 4…6 are not consecutive 12 h steps"):
        scan(pairs, "p_star", [1.0], [4], 3)  # each run has 6 windows: 4…6 crosses into the next run, a year later
    with pytest.raises(ValueError, match="'p_stars' is not a real parameter"):
        scan(pairs, "p_stars", [1.0], [0], 2)
    out = tmp_path / "scan.json"
    assert main([str(pairs), "--factors", "1", "2", "--starts", "0", "--days", "1", "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())["rmse"]) == {"1", "2"}
    assert main([str(pairs), "--starts", "5", "--days", "1"]) == 2
