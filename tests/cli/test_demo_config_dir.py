"""`icecorr demo --config-dir`: a config folder's sizes (demo.yaml), configs and region files reach the stages'
commands; the built-in demo's plan is unchanged. (The stages themselves are not run here.)"""
from __future__ import annotations

from pathlib import Path

import xarray as xr
import numpy as np

from icecorr.cli.demo import CONFIG_DIR, Demo, DemoPlan, TRAIN_CONFIGS, plan
from icecorr.cli.demo_summary import training_steps
from icecorr.cli.main import build_parser

REGION = Path(__file__).resolve().parents[2] / "configs" / "region" / "hudson_bay"


def test_builtin_plan_unchanged():
    assert plan(False) == DemoPlan()
    quick = plan(True)
    assert "grid.nx=16" in quick.generate_overrides and quick.windows == 1 and quick.members == 4


def test_the_demo_generates_and_couples_with_one_tuned_physics():
    """The pairs' forecasts (generate) and the coupled runs (couple) must run the same coarse model: the demo's
    P* tuned to its truth (docs/calibration.md), not Hibler's default."""
    import yaml

    from fortran_stub.config import CoarsePhysicsConfig

    generate, couple = (CoarsePhysicsConfig.model_validate(yaml.safe_load((CONFIG_DIR / f"{n}.yaml").read_text())["physics"])
                        for n in ("generate", "couple"))
    assert generate == couple and generate.p_star == 2.5 * CoarsePhysicsConfig().p_star


def test_demo_trainings_stop_at_fixed_step_counts():
    """Reproducible figures: the cosine horizon is max_steps, never fitted to a time budget (a guard only)."""
    import yaml

    for path in TRAIN_CONFIGS.values():
        train = yaml.safe_load(path.read_text())["train"]
        assert train["fit_schedule_to_budget"] is False and train["max_steps"] >= 400, path


def test_summary_flags_a_training_stopped_by_its_time_guard(tmp_path):
    for name, done in (("deterministic", 2000), ("diffusion", 1200)):
        folder = tmp_path / "train" / name
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(f"step,val_skill\n{done // 2},0.1\n{done},0.2\n")
        (folder / "config.yaml").write_text("train:\n  max_steps: 2000\n")
    assert training_steps(tmp_path / "train") == ["deterministic 2000/2000", "diffusion 1200/2000 (STOPPED BY THE TIME GUARD)"]


def test_region_plan_from_demo_yaml():
    full, quick = plan(False, REGION), plan(True, REGION)
    assert (full.members, full.windows, full.window_days) == (8, 6, 10.0) and full.generate_ranks == 2
    assert "train.max_steps=600" in full.train_overrides["diffusion"]   # fixed steps per model
    assert (quick.members, quick.windows, quick.window_days) == (4, 1, 2.0)
    assert set(quick.train_overrides) == set(TRAIN_CONFIGS) and "train.max_steps=30" in quick.train_overrides["emulator"]
    assert not any(o.startswith("grid.") for o in quick.generate_overrides)   # the region fixes the grid
    assert full.emulator_extra_seeds == [] == quick.emulator_extra_seeds   # the region's emulator: its own pairs


def test_region_commands(tmp_path, monkeypatch):
    demo = Demo(tmp_path, quick=True, progress=False, reuse=False, config_dir=REGION)
    calls = []
    monkeypatch.setattr(Demo, "icecorr", lambda self, *args, **kw: calls.append(args))
    demo.generate()
    gen = calls[-1]
    assert gen[1] == str(REGION / "generate.yaml")
    assert f"region={REGION / 'grid.yaml'}" in gen and f"forcing={REGION / 'forcing.yaml'}" in gen
    assert demo.train_args("diffusion", 1)[1] == str(TRAIN_CONFIGS["diffusion"])   # no own train config
    demo.data.mkdir(parents=True)
    ds = xr.Dataset({"mask": (("y", "x"), np.ones((4, 4), np.int8)), "run": ("time", np.zeros(10, np.int32))},
                    coords={"lat": (("y", "x"), np.full((4, 4), 60.0))})
    ds.to_netcdf(demo.data / "test.nc")
    demo.run("coarse", None, members=1)
    run = calls[-1]
    assert run[1] == str(REGION / "couple.yaml")
    assert f"grid.mask={demo.data / 'test.nc'}" in run and f"grid.latitude={demo.data / 'test.nc'}" in run


def test_box_demo_commands_keep_the_builtin_configs(tmp_path, monkeypatch):
    demo = Demo(tmp_path, quick=True, progress=False, reuse=False)
    calls = []
    monkeypatch.setattr(Demo, "icecorr", lambda self, *args, **kw: calls.append(args))
    demo.generate()
    assert calls[-1][1] == str(CONFIG_DIR / "generate.yaml") and not any("region=" in a for a in calls[-1])
    demo.data.mkdir(parents=True)
    xr.Dataset({"run": ("time", np.zeros(10, np.int32))}).to_netcdf(demo.data / "test.nc")
    demo.run("coarse", None, members=1)
    assert not any(a.startswith("grid.mask") for a in calls[-1])
    args = build_parser().parse_args(["demo", "--config-dir", str(REGION)])
    assert args.config_dir == str(REGION)
