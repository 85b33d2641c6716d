"""`python -m training.evaluation.longrun` end to end on a tiny twin: coupled runs with several correctors, checks, report."""
from __future__ import annotations

import json

import numpy as np
import xarray as xr

from corrector.checkpoint import mask_hash, save_checkpoint
from corrector.normalization import Normalization
from fortran_stub.config import CoarsePhysicsConfig
from training.data.config import TwinConfig
from training.data.generate import run_generate
from training.evaluation.longrun import main

from tests.corrector.test_model import random_model, tiny_cfg

UNITS = {"sic": "1", "sit": "m", "snt": "m", "siu": "m s-1", "siv": "m s-1"}


def test_longrun_reports_every_coupled_run(tmp_path):
    cfg = TwinConfig.model_validate({"grid": {"nx": 16, "ny": 16, "dx": 32_000.0},
                                     "generate": {"run_days": 2.0, "spinup_days": 0.5,
                                                  "seeds": {"train": [11], "val": [], "test": []}}})
    truth = run_generate(cfg, tmp_path / "truth", progress=False)[0]
    corrector_cfg = tiny_cfg(kind="deterministic")
    model = random_model(corrector_cfg)
    ckpt = save_checkpoint(tmp_path / "det.pt", model_state=model.state_dict(), ema_state=None,
                           config=corrector_cfg,
                           normalization=Normalization.identity(corrector_cfg.conditioning, corrector_cfg.variables),
                           grid={"nx": 16, "ny": 16, "dx": 32_000.0, "mask_hash": mask_hash(np.ones((16, 16)))},
                           variables_units=UNITS,
                           extra={"coarse_physics": CoarsePhysicsConfig(p_star=55_000.0).model_dump(mode="json")})
    out = tmp_path / "out"
    code = main(["--truth", str(truth), "--out", str(out), "--couple-days", "1.5", "--members", "3",
                 "--coupled", f"small random net={ckpt}"])
    assert code == 0
    summary = json.loads((out / "longrun.json").read_text())
    runs = summary["runs"]
    assert set(runs) == {"coupled small random net", "coarse uncorrected"}
    # every coarse run (the uncorrected one too) runs the physics whose residual the corrector learned
    assert summary["coarse_physics"] == {"source": "the correctors' training pairs", "p_star": 55_000.0}
    assert runs["coupled small random net"]["members"] == 1  # a deterministic corrector: one member
    with xr.open_dataset(out / "coupled_small_random_net.nc") as ds:
        assert ds.sizes["time"] == 4 and ds.attrs["status"] == "complete"
        corrected = ds["sit"].values
    with xr.open_dataset(out / "coarse.nc") as ds:
        assert not np.array_equal(corrected, ds["sit"].values)  # the corrector acted
    report = (out / "report.md").read_text()
    assert "coupled small random net" in report and "long_run_coupled.png" in report
