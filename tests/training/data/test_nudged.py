"""Nudged pairs (`training.data.nudged`): a coarse-model run relaxed towards the reference, its increments the
residual; exact relations against the real coarse model on a 16² twin."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from icecorr.base.variables import ML_VARIABLES
from training.data.nudged import main, nudged_pairs

from tests.training.data.test_generate import generated  # noqa: F401 - the module's 16² twin pairs


def test_the_run_is_relaxed_towards_the_reference_and_its_increment_is_the_residual(generated):  # noqa: F811
    _, out, _ = generated
    with xr.open_dataset(out / "train.nc") as ds:
        pairs = ds.load()
    nudged = nudged_pairs(pairs, 0.5)
    n = pairs.sizes["time"]
    assert nudged.sizes == pairs.sizes and nudged.attrs["nudging_alpha"] == 0.5
    for v in ML_VARIABLES:
        ini, fc, ref = (nudged[f"{p}_{v}"].values.astype(np.float64) for p in ("initial", "forecast", "reference"))
        truth = pairs[f"reference_{v}"].values.astype(np.float64)
        np.testing.assert_allclose(ini[0], pairs[f"initial_{v}"].values[0], atol=1e-6)  # starts from the reference
        np.testing.assert_allclose(ref, fc + 0.5 * (truth - fc), atol=1e-5)              # halfway to the truth
        np.testing.assert_allclose(ini[1:], ref[:-1], atol=1e-6)                           # one continuous run
        np.testing.assert_allclose(nudged[f"residual_{v}"].values, ref - fc, atol=1e-5)
    # the run is not the truth: from the second window on it starts from its own, nudged state
    assert np.abs(nudged["initial_sit"].values[1:] - pairs["initial_sit"].values[1:]).max() > 1e-4
    assert 0 <= nudged["reference_sic"].min() and nudged["reference_sic"].max() <= 1 and n > 1
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]"):
        nudged_pairs(pairs, 0.0)


def test_cli_writes_the_file_or_one_error_line_and_nothing(generated, tmp_path, capsys):  # noqa: F811
    _, out, _ = generated
    assert main([str(out / "train.nc"), str(tmp_path / "nudged.nc"), "--alpha", "0.25"]) == 0
    with xr.open_dataset(tmp_path / "nudged.nc") as ds:
        assert ds.attrs["nudging_alpha"] == 0.25
    with xr.open_dataset(out / "train.nc") as ds:
        ds.drop_vars("reference_sit").to_netcdf(tmp_path / "noref.nc")
    capsys.readouterr()
    assert main([str(tmp_path / "noref.nc"), str(tmp_path / "bad.nc")]) == 2
    err = capsys.readouterr().err
    assert "noref.nc" in err and "'reference_sit'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.nc").exists()
