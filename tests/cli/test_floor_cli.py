"""`icecorr floor` on the command line (a tiny twin) and the demo's floor stage and summary column."""
from __future__ import annotations

import numpy as np
import xarray as xr

from icecorr.cli.demo import CONFIG_DIR, Demo
from icecorr.cli.main import main

TINY = """grid: {nx: 8, ny: 8, dx: 64000.0}
generate: {run_days: 2.0, spinup_days: 0.5, seeds: {train: [1], val: [], test: [5]}}
floor: {starts: 2, members: 2, lead_days: 0.5}
"""


def test_floor_cli_writes_the_file_and_refuses_to_overwrite(tmp_path, capsys):
    cfg = tmp_path / "generate.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "data" / "floor.nc"
    out.parent.mkdir()
    assert main(["floor", str(cfg), "floor.seed=3", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "floor: 12 h spread / coarse RMSE sic" in text
    with xr.open_dataset(out) as ds:
        assert ds.attrs["seed"] == 3 and ds.attrs["run_seed"] == 5 and ds.sizes["lead_time"] == 2
    assert main(["floor", str(cfg), "--out", str(out)]) == 2  # exists: --overwrite needed
    assert main(["floor", str(cfg), "floor.members=1", "--out", str(out), "--overwrite"]) == 2  # bad config
    assert "floor.members" in capsys.readouterr().err
    assert main(["floor", str(cfg), "--dry-run"]) == 0 and "lead_days: 0.5" in capsys.readouterr().out


def test_demo_runs_the_floor_beside_the_pairs(tmp_path, monkeypatch):
    demo = Demo(tmp_path, quick=True, progress=False, reuse=False)
    demo.data.mkdir(parents=True)  # the floor stage follows generate: the test split is there
    xr.Dataset({"run": ("time", np.zeros(20, np.int32))}).to_netcdf(demo.data / "test.nc")
    calls = []
    monkeypatch.setattr(Demo, "icecorr", lambda self, *args, **kw: calls.append((args, kw)))
    demo.floor()
    args, kw = calls[-1]
    assert args[:2] == ("floor", str(CONFIG_DIR / "generate.yaml")) and "grid.nx=16" in args
    assert "floor.lead_days=3" in args and "floor.members=3" in args and "floor.start_windows=[0]" in args
    assert args[args.index("--out") + 1] == str(demo.data / "floor.nc") and kw["ranks"] == 2
