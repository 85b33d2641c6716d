"""The demo's floor stage runs the truth ensembles at the coupled windows' own start dates (same dates, same scores),
and falls back to the even spread when a window lies outside the floor's run; its cross-fitted regression stages."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import xarray as xr

from icecorr.cli.demo import Demo


def _demo(tmp_path, monkeypatch, runs):
    demo = Demo(tmp_path, quick=True, progress=False, reuse=False)
    demo.plan = dataclasses.replace(demo.plan, windows=3)  # 3-day windows at 0, 17, 33 of 40 records
    demo.data.mkdir(parents=True, exist_ok=True)
    xr.Dataset({"run": ("time", np.asarray(runs, np.int32))}).to_netcdf(demo.data / "test.nc")
    calls = []
    monkeypatch.setattr(Demo, "icecorr", lambda self, *args, **kw: calls.append(args))
    demo.floor()
    return demo, [a for a in calls[-1] if a.startswith("floor.start_windows=")]


def test_floor_starts_at_the_coupled_windows(tmp_path, monkeypatch):
    demo, given = _demo(tmp_path, monkeypatch, [0] * 40)
    assert given == [f"floor.start_windows={json.dumps(demo.window_starts())}"]


def test_windows_in_another_run_keep_the_even_spread(tmp_path, monkeypatch):
    demo, given = _demo(tmp_path, monkeypatch, [0] * 20 + [1] * 20)
    assert any(s >= 20 for s in demo.window_starts()) and given == []


def test_cross_fitted_stages_for_alternate_runs(tmp_path, monkeypatch):
    """With `cross_fit`, two deterministic trainings on alternate training runs, and the diffusion corrector gets
    for each run the stage trained on the other fold; a single run: no folds."""
    demo = Demo(tmp_path, quick=True, progress=False, reuse=False)
    demo.plan = dataclasses.replace(demo.plan, cross_fit=True)
    demo.data.mkdir(parents=True)
    xr.Dataset({"run": ("time", np.repeat([0, 1, 2], 4).astype(np.int32))}).to_netcdf(demo.data / "train.nc")
    jobs, calls = [], []
    monkeypatch.setattr(Demo, "parallel", lambda self, *j: jobs.extend(j))
    monkeypatch.setattr(Demo, "icecorr", lambda self, *args, **kw: calls.append(args))
    demo.train_folds()
    assert [[a for a in args if a.startswith(("train.data.runs", "train.out_dir"))] for args, _ in jobs] == [
        ["train.out_dir=" + str(tmp_path / "train" / "fold0"), "train.data.runs=[0, 2]"],
        ["train.out_dir=" + str(tmp_path / "train" / "fold1"), "train.data.runs=[1]"]]
    for name in ("deterministic", "fold0", "fold1"):
        (tmp_path / "train" / name).mkdir(parents=True)
        (tmp_path / "train" / name / "best.pt").write_bytes(b"")
    demo.train_diffusion(threads=2)
    stages = json.loads(next(a for a in calls[-1] if a.startswith("train.cross_fit=")).split("=", 1)[1])
    fold = {k: str(tmp_path / "train" / f"fold{k}" / "best.pt") for k in (0, 1)}
    assert stages == {"0": fold[1], "2": fold[1], "1": fold[0]}
    xr.Dataset({"run": ("time", np.zeros(4, np.int32))}).to_netcdf(demo.data / "train.nc", mode="w")
    assert demo.fold_runs() == []


def test_only_the_diffusion_ensemble_runs_perturbed_physics(tmp_path, monkeypatch):
    """The coarse and deterministic baselines keep one physics; the diffusion ensemble gets the plan's
    couple.physics_perturbation (and none when the plan's is empty)."""
    for perturbation in ({"p_star": 0.5, "c_air": 0.1}, {}):
        demo = Demo(tmp_path, quick=True, progress=False, reuse=False)
        demo.plan = dataclasses.replace(demo.plan, physics_perturbation=perturbation)
        calls = []
        monkeypatch.setattr(Demo, "window_starts", lambda self, runs=None: [0])
        monkeypatch.setattr(Demo, "icecorr", lambda self, *args, **kw: calls.append(args))
        monkeypatch.setattr(Demo, "summary", lambda self: "")
        monkeypatch.setattr(Demo, "fold_runs", lambda self: [])
        monkeypatch.setattr(Demo, "checkpoint", lambda self, name: tmp_path / name / "best.pt")
        ran = []
        monkeypatch.setattr(Demo, "stage", lambda self, name, done, func: (ran.append(name), func())
                            if name.endswith(("runs", "ensemble")) else None)
        demo.main()
        outputs = [next(a for a in args if a.startswith("couple.output=")) for args in calls]
        by_label = {Path(out.split("=", 1)[1]).stem: [a for a in args if a.startswith("couple.physics_perturbation=")]
                    for out, args in zip(outputs, calls)}
        assert ran == ["coarse runs", "deterministic-corrected runs", "diffusion-corrected MPI ensemble",
                       "emulator ensemble"]
        assert by_label["coarse"] == by_label["deterministic"] == by_label["emulator"] == []
        assert by_label["diffusion"] == [f"couple.physics_perturbation={json.dumps(perturbation)}"]
