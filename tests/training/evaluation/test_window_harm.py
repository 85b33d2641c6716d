"""Where a corrector hurts (`training.evaluation.window_harm`): per-window ratios binned by the uncorrected error,
and the offline-skill refactor it shares (the same pooled scores from the per-window batches)."""
from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.offline_skill import corrected_windows, offline_skill
from training.evaluation.window_harm import harm_table, main, window_rmse
from training.fit.loop import run_train
from tests.training.fit.test_fit import files, tiny  # noqa: F401  (module fixture reused)


def test_bins_medians_and_share_worse():
    uncorrected = np.array([1e-4, 2e-4, 5e-4, 2e-2, 5e-2, 0.0])
    corrected = np.array([4e-4, 1e-4, 1e-3, 1e-2, 1e-2, 0.0])  # calm: worse ×4, better ×0.5; storms better
    rows = harm_table(uncorrected, corrected, edges=(0.0, 3e-4, 1e-3, np.inf))
    assert [r["windows"] for r in rows] == [3, 1, 2]
    assert rows[0]["median_ratio"] == pytest.approx(1.0) and rows[0]["share_worse"] == pytest.approx(1 / 3)
    assert rows[1]["median_ratio"] == pytest.approx(2.0) and rows[1]["share_worse"] == 1.0
    assert rows[2]["median_ratio"] == pytest.approx(0.35) and rows[2]["share_worse"] == 0.0
    assert harm_table(np.array([0.0]), np.array([1e-6]))[0]["share_worse"] == 1.0  # any change of a perfect forecast


def test_per_window_scores_pool_to_the_offline_skill(files, tmp_path, capsys):  # noqa: F811
    det = run_train(tiny(files, tmp_path / "det", "corrector.kind=deterministic", "train.max_steps=6",
                         "train.val_every=6"), verbose=False)
    val = files[1]
    per_window = window_rmse(det, val)
    pooled = offline_skill(det, val)
    for v, (before, after) in per_window.items():
        assert before.shape == after.shape == (16,)
        # every window has the same number of ocean cells: the pooled RMSE is the root mean of the squares
        assert np.sqrt(np.mean(before ** 2)) == pytest.approx(pooled[v]["rmse_forecast"], rel=1e-9)
        assert np.sqrt(np.mean(after ** 2)) == pytest.approx(pooled[v]["rmse_corrected"], rel=1e-9)
    batches = list(corrected_windows(det, val, batch=5))
    assert [len(b[3]) for b in batches] == [5, 5, 5, 1] and batches[0][1]["sit"].shape[1] == 1
    assert main([str(det), str(val), "--variable", "sit", "--edges", "0", "1"]) == 0
    assert "| 0 – 1 | 16 |" in capsys.readouterr().out
