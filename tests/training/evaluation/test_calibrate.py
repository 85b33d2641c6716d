"""Spread calibration (`icecorr calibrate`): factors fitted on validation data bring spread/RMSE to 1."""
from __future__ import annotations

import numpy as np
import pytest

from corrector.checkpoint import CheckpointError, load_checkpoint
from corrector.inference import Corrector
from corrector.seeding import member_seeds
from icecorr.cli import main as cli
from training.evaluation.calibrate import calibrate, spread_skill, validation_windows
from tests.training.fit.test_fit import files  # noqa: F401  (module fixtures reused)
from tests.training.fit.test_fit_base_stage import stages  # noqa: F401


def _ratio(checkpoint, val_file, members=8, windows=12, seed=12345):
    c = Corrector.load(checkpoint)
    cond, target, ocean = validation_windows(val_file, c, windows)
    seeds = member_seeds(seed, np.arange(next(iter(target.values())).shape[0]), 0, members)
    return spread_skill(c.sample(cond, members, seeds=seeds), target, c.variables, ocean)


def test_calibration_brings_spread_skill_to_one(stages, files, tmp_path):  # noqa: F811
    """Fitted on the validation file (12 windows, 8 members, seed 12345), scored on held-out data: another
    synthetic file (other fields and noise), 16 windows, 12 members, another seed."""
    from tests.training.fit.test_dataset_synthetic import write_pair_file

    _, diff = stages
    held_out = write_pair_file(tmp_path / "held_out.nc", n_time=16, runs=1, seed=7)
    before = _ratio(diff, held_out, members=12, windows=16, seed=777)
    out = tmp_path / "calibrated.pt"
    factors = calibrate(diff, files[1], members=8, windows=12, output=out, verbose=False)
    after = _ratio(out, held_out, members=12, windows=16, seed=777)
    assert load_checkpoint(out).config.sampler.spread_inflation == pytest.approx(factors, rel=1e-3)
    assert load_checkpoint(diff).config.sampler.spread_inflation is None  # the original is untouched
    # held out (measured): before 1.10 1.04 1.18 1.56 1.22, after 1.00 0.86 1.08 1.11 1.06. On the fitted windows
    # and seed the ratios come out at 1.00 ± 0.003: that only shows the fit solved its own equation. Factors fitted
    # on 12 windows × 8 members carry sampling error (sit overshoots from 1.04 to 0.86), so the held-out check is on
    # the whole: every ratio within 0.2 of 1, and the mean |log ratio| less than 0.6 of the uncalibrated one.
    assert np.abs(before - 1.0).max() > 0.3  # uncalibrated, the tiny model is clearly off: a real test
    assert np.all(np.abs(after - 1.0) < 0.2), after
    assert np.abs(np.log(after)).mean() < 0.6 * np.abs(np.log(before)).mean(), (before, after)


def test_calibration_refuses_a_model_without_regression_stage(stages, files, capsys):  # noqa: F811
    det, _ = stages
    with pytest.raises(CheckpointError, match="regression stage"):
        calibrate(det, files[1], windows=4)
    assert cli(["calibrate", str(det), "--data", str(files[1])]) == 2
    assert "regression stage" in capsys.readouterr().err
