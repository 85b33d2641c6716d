"""`QUICK=1 scripts/arctic.sh`: the whole Arctic path at tiny size (200 km grid, a few days, a few training steps):
emulator pairs over 2 MPI ranks, the BBM run, patch training of the deterministic emulator (one step, then
fine-tuned on rollouts) and of the diffusion emulator on top of it, whole-domain rollouts, the BBM timed on the same grid, the report and `icecorr evaluate`."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import xarray as xr

from corrector.checkpoint import load_checkpoint
from tests.helpers.paths import REPO


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(1800)  # ≈ 3 min on 2 free cores; 10+ min when the machine is shared
def test_quick_arctic_path_end_to_end(tmp_path):
    out = tmp_path / "arctic"
    env = {**os.environ, "QUICK": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(REPO / "scripts" / "arctic.sh"), str(out)], env=env, capture_output=True, text=True,
                          timeout=1700)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with xr.open_dataset(out / "data" / "train.nc") as ds:
        assert ds.attrs["forecast"] == "persistence" and int(ds.attrs["refinement"]) == 1
        assert (ds.sizes["y"], ds.sizes["x"]) == (16, 24) and "lat" in ds.coords
        assert ds["initial_sic"].shape[0] == 12  # 2 train runs x 3 days x 2 windows
    # the diffusion emulator sits on the deterministic one (its frozen regression stage), as on the box
    diffusion = load_checkpoint(out / "train" / "emulator" / "best.pt")
    assert diffusion.config.kind == "diffusion" and diffusion.config.base_network is not None
    # the deterministic emulator: trained one step ahead on the bounded state, then fine-tuned on rollouts from it
    one_step = load_checkpoint(out / "train" / "emulator_one_step" / "best.pt")
    assert one_step.config.kind == "deterministic" and one_step.config.loss_bounded
    tuned = (out / "train" / "emulator_deterministic" / "config.yaml").read_text()
    assert "rollout_steps: 2" in tuned and f"init_checkpoint: {out / 'train' / 'emulator_one_step' / 'best.pt'}" in tuned
    summary = json.loads((out / "report" / "arctic.json").read_text())
    assert summary["bbm_cost"]["truth_s"] > 0 and summary["bbm_cost"]["cells"] == 16 * 24
    # β(q) at 15 and 50 days: beyond these 4-day rollouts, so no window has records and none is reported
    assert summary["scaling"]["windows"] == [[10.0, 20.0], [45.0, 55.0]]
    assert summary["scaling"]["beta"]["truth"] == [None, None]
    assert "speed-up over the BBM" in (out / "report" / "report.md").read_text()
    for label in ("diffusion", "deterministic", "one_step"):
        run = summary["runs"][label]
        assert "error" not in run, run
        assert run["checks"]["nonfinite_first_step"] is None and run["ice_on_land"] == 0.0
        with xr.open_dataset(out / "report" / f"emulator_{label}.nc") as ds:
            assert (ds.sizes["y"], ds.sizes["x"]) == (16, 24)  # the whole domain in one pass
    assert (out / "report" / "report.md").exists() and (out / "report" / "seasonal_cycle.png").exists()
    assert (out / "report" / "evaluate" / "report.md").exists()
