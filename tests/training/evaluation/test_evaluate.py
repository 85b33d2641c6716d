"""End-to-end `run_evaluate` on small synthetic runs, and the reader's alignment rules and error messages."""
from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from icecorr.base.errors import InputError
from coupling.output import TrajectoryWriter
from training.evaluation.alignment import align, read_reference
from training.evaluation.config import EvaluateConfig
from training.evaluation.evaluate import evaluate, run_evaluate
from training.evaluation.metrics_file import read_metrics_netcdf

N = 16
DX = 16_000.0
START = datetime(2000, 10, 1)
VARS = ("sic", "sit", "snt", "siu", "siv")
ATTRS = {"sic": {"units": "1"}, "sit": {"units": "m"}, "snt": {"units": "m"}, "siu": {"units": "m s-1"},
         "siv": {"units": "m s-1"}}


def smooth(rng, shape, scale=3):
    f = rng.normal(size=shape)
    for _ in range(scale):
        f = 0.25 * (np.roll(f, 1, -1) + np.roll(f, -1, -1) + np.roll(f, 1, -2) + np.roll(f, -1, -2))
    return f / f.std()


def truth_trajectory(n_time: int, seed: int = 0) -> dict[str, np.ndarray]:
    """(time, y, x) fields with open water in one corner, thickness ~1.5 m and smooth velocities (walls 0)."""
    rng = np.random.default_rng(seed)
    shape = (n_time, N, N)
    sic = np.clip(0.9 + 0.2 * smooth(rng, shape), 0, 1)
    sic[:, :3, :3] = 0.0
    sit = np.where(sic > 0, 1.5 + 0.3 * smooth(rng, shape), 0.0)
    snt = np.where(sic > 0, 0.2 + 0.02 * smooth(rng, shape), 0.0)
    siu = 0.1 * smooth(rng, shape, 1)
    siv = 0.1 * smooth(rng, shape, 1)
    siu[..., -1] = 0.0
    siv[..., -1, :] = 0.0
    return {"sic": sic, "sit": sit, "snt": snt, "siu": siu, "siv": siv}


def write_reference(path: Path, fields: dict[str, np.ndarray], mask: np.ndarray) -> Path:
    n_time, ny, nx = fields["sic"].shape
    t = [START + timedelta(hours=12 * k) for k in range(n_time)]
    ds = xr.Dataset({v: (("time", "y", "x"), a, ATTRS[v]) for v, a in fields.items()},
                    coords={"time": t, "x": (np.arange(nx) + 0.5) * DX, "y": (np.arange(ny) + 0.5) * DX})
    ds["mask"] = (("y", "x"), mask.astype(np.int8))
    ds.to_netcdf(path)
    return path


def write_trajectory(path: Path, members: np.ndarray | dict, start_index: int) -> Path:
    """Run file in the coupler's format: (time, member, y, x) + step, starting with the initial state."""
    any_field = next(iter(members.values()))
    n_time, m = any_field.shape[:2]
    with TrajectoryWriter(path, {v: ATTRS[v] for v in VARS}, m, N, N, DX,
                          START + timedelta(hours=12 * start_index)) as w:
        for k in range(n_time):
            w.append(START + timedelta(hours=12 * (start_index + k)), k, {v: members[v][k] for v in VARS})
    return path


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Truth over 10 records; two 7-record windows (starts 0 and 3) of: a perfect-but-for-noise 'calibrated'
    4-member ensemble, a smoothed deterministic 'coarse' run, and a (window, time) file with lead index."""
    tmp = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(42)
    truth = truth_trajectory(10)
    mask = np.ones((N, N))
    mask[-2:, -2:] = 0  # a little land
    ref = write_reference(tmp / "truth.nc", truth, mask)
    ens_files, coarse_files, det_windows = [], [], []
    for w, start in enumerate((0, 3)):
        sl = slice(start, start + 7)
        lead_noise = np.arange(7)[:, None, None, None] / 6.0
        ens = {}
        for v in VARS:
            scale = {"sic": 0.03, "sit": 0.1, "snt": 0.01, "siu": 0.01, "siv": 0.01}[v]
            centre = truth[v][sl][:, None] + scale * lead_noise * rng.normal(size=(7, 1, N, N))
            ens[v] = centre + scale * lead_noise * rng.normal(size=(7, 4, N, N))
            if v == "sic":
                ens[v] = np.clip(ens[v], 0, 1)
        ens_files.append(write_trajectory(tmp / f"diffusion_w{start}.nc", ens, start))
        coarse = {}
        for v in VARS:
            f = truth[v][sl].copy()
            f[1:] = 0.5 * (f[1:] + 0.25 * (np.roll(f[1:], 1, -1) + np.roll(f[1:], -1, -1) + np.roll(f[1:], 1, -2)
                                           + np.roll(f[1:], -1, -2)))
            if v == "siu":
                f[..., -1] = 0
            if v == "siv":
                f[..., -1, :] = 0
            coarse[v] = f[:, None]
        coarse_files.append(write_trajectory(tmp / f"coarse_w{start}.nc", coarse, start))
        det_windows.append({v: truth[v][start + 1: start + 7] + 0.02 for v in VARS})  # leads 12 h … 72 h
    det = xr.Dataset({v: (("window", "time", "y", "x"), np.stack([d[v] for d in det_windows]), ATTRS[v])
                      for v in VARS})
    det["valid_time"] = (("window", "time"), np.array([[np.datetime64(START + timedelta(hours=12 * (s + k)))
                                                         for k in range(1, 7)] for s in (0, 3)]))
    det.to_netcdf(tmp / "deterministic.nc")
    return {"dir": tmp, "ref": ref, "truth": truth, "mask": mask, "diffusion": ens_files, "coarse": coarse_files,
            "deterministic": tmp / "deterministic.nc"}


def runs(s):
    return {"coarse": s["coarse"], "deterministic": s["deterministic"], "diffusion": s["diffusion"]}


def test_alignment_and_leads(scenario):
    cfg = EvaluateConfig()
    ref, files = read_reference(scenario["ref"], cfg.variables)
    a = align("diffusion", scenario["diffusion"], ref, files, cfg)
    assert a.forecast["sic"].dims == ("window", "lead", "member", "y", "x")
    assert a.forecast["lead"].values.tolist() == [0, 12, 24, 36, 48, 60, 72]
    # window 1 starts at truth record 3: its lead-0 reference is truth record 3
    np.testing.assert_array_equal(a.reference["sit"].isel(window=1, lead=0), scenario["truth"]["sit"][3])
    d = align("deterministic", scenario["deterministic"], ref, files, cfg)
    assert "member" not in d.forecast.dims
    assert d.forecast["lead"].values.tolist() == [12, 24, 36, 48, 60, 72]  # first record ≠ truth ⇒ 12 h
    np.testing.assert_allclose(d.forecast["sic"] - d.reference["sic"], 0.02)
    c = align("coarse", scenario["coarse"], ref, files, cfg)
    assert "member" not in c.forecast.dims  # a 1-member trajectory is deterministic


def test_scores_reflect_the_constructed_errors(scenario):
    ev = evaluate(runs(scenario), scenario["ref"], leads=(12, 72))
    m = ev.metrics
    # constant +0.02 offset: bias 0.02, rmse 0.02, mae 0.02 at every lead, every variable (ocean cells only)
    det = m.sel(model="deterministic").dropna("lead", how="all", subset=["rmse"])
    np.testing.assert_allclose(det["bias"], 0.02, rtol=1e-6)
    np.testing.assert_allclose(det["rmse"], 0.02, rtol=1e-6)
    # initial state: zero error at lead 0 for runs that start from the truth
    assert float(m["rmse"].sel(model="coarse", lead=0).max()) == 0.0
    # persistence baseline: the truth at lead 0 held fixed
    pers = m["rmse"].sel(model="persistence", variable="sit")
    assert float(pers.sel(lead=0)) == 0.0 and float(pers.sel(lead=72)) > 0.1
    ens = m.sel(model="diffusion")
    assert int(ens["members"]) == 4 and int(m["members"].sel(model="coarse")) == 1
    assert (ens["spread"].sel(lead=72) > 0).all()
    # the ensemble is built calibrated (truth and members share the noise law): spread/RMSE ≈ 1 at the last lead
    np.testing.assert_allclose(ens["spread_skill_ratio"].sel(lead=72, variable=["sit", "siu", "siv"]), 1.0, atol=0.2)
    # finite-ensemble pair beside the raw scores: the M → ∞ RMSE is below the 4-member one once there is spread,
    # the uncorrected ratio is the corrected one × √(4/5); runs with one member have neither
    assert (ens["ensemble_mean_rmse_fair"].sel(lead=72) < ens["ensemble_mean_rmse"].sel(lead=72)).all()
    np.testing.assert_allclose(ens["spread_skill_ratio_raw"], ens["spread_skill_ratio"] * np.sqrt(4 / 5))
    assert not np.isfinite(m["ensemble_mean_rmse_fair"].sel(model=["coarse", "deterministic"])).any()
    assert np.isfinite(m["nrmse"]).sum() > 0
    assert m["beta"].dims == ("source", "coarse_graining", "q") and "truth" in m["source"].values
    # smoothing removes small-scale power: the coarse run's ratio at the last lead is < 1, the offset run's is 1
    ratio = m["small_scale_ratio"].sel(spectrum_lead=72.0)
    assert float(ratio.sel(model="coarse", spectrum_field="sit")) < 0.8
    np.testing.assert_allclose(ratio.sel(model="deterministic"), 1.0, rtol=1e-6)
    pdf = m["pdf_shear"].sel(source="truth")
    widths = m["pdf_upper"] - m["pdf_lower"]
    assert 0.9 < float((pdf * widths).sum()) <= 1.0 + 1e-9


def test_spectrum_leads_come_from_the_config_at_the_nearest_available_lead(scenario):
    cfg = EvaluateConfig(spectrum_leads_hours=[30.0, 1200.0])  # 50 days: beyond these 72 h runs
    m = evaluate(runs(scenario), scenario["ref"], config=cfg).metrics
    assert m["small_scale_ratio"]["spectrum_lead"].values.tolist() == [24.0, 72.0]
    assert EvaluateConfig().spectrum_leads_hours == [12.0, 120.0, 360.0]


def test_spread_error_reliability_of_ensembles_in_any_order_of_labels(scenario):
    """Ensembles carry coordinates (rank, spread_bin) deterministic runs lack; an ensemble, a deterministic run and
    an ensemble in that order used to be refused by xarray's concat."""
    s = scenario
    m = evaluate({"ens_a": s["diffusion"], "coarse": s["coarse"], "ens_b": s["diffusion"]}, s["ref"],
                 leads=(12, 72)).metrics
    ratio = m["spread_error_bin_spread"] / m["spread_error_bin_rmse"]
    assert ratio.dims == ("model", "variable", "spread_bin")
    np.testing.assert_array_equal(ratio.sel(model="ens_a"), ratio.sel(model="ens_b"))  # same files, same seed
    assert not np.isfinite(ratio.sel(model="coarse")).any()
    # built calibrated (truth and members share the noise law): about 1 in the classes of the velocity
    np.testing.assert_allclose(ratio.sel(model="ens_a", variable=["siu", "siv"]), 1.0, atol=0.35)
    np.testing.assert_allclose(m["spread_error_bin_share"].sel(model="ens_a").sum("spread_bin"), 1.0)


def test_run_evaluate_writes_report_metrics_and_plots(scenario):
    out = scenario["dir"] / "report"
    report = run_evaluate(runs(scenario), scenario["ref"], out, leads=(12, 72))
    text = report.read_text()
    assert report.name == "report.md"
    assert "## Summary by model" in text and "## Summary by variable" in text
    for label in ("coarse", "deterministic", "diffusion", "persistence", "truth"):
        assert f"| {label} |" in text
    pngs = sorted(p.name for p in out.glob("*.png"))
    for name in ("rmse_spread_vs_lead.png", "nrmse_vs_lead.png", "spread_skill_crps_vs_lead.png", "spectra.png",
                 "deformation_pdfs.png", "deformation_scaling.png", "rank_histograms.png", "shear_p90.png",
                 "spread_error.png", "maps_12h.png", "maps_72h.png"):
        assert name in pngs
        assert f"]({name})" in text
    assert not list(out.glob("*.tmp-*"))
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"model", "variable", "lead_hours", "metric", "value"} == set(rows[0])
    assert any(r["metric"] == "crps" and r["model"] == "diffusion" for r in rows)
    fair_rows = {r["model"] for r in rows if r["metric"] in ("ensemble_mean_rmse_fair", "spread_skill_ratio_raw")}
    assert fair_rows == {"diffusion"}
    assert "## Finite-ensemble correction" in text and "| sit | diffusion | 4 |" in text
    assert "## Spread–error reliability" in text and "| siu | diffusion | " in text
    assert {r["model"] for r in rows if r["metric"] == "spread_error_slope"} == {"diffusion"}
    reopened = read_metrics_netcdf(out / "metrics.nc")
    assert set(reopened["model"].values) == {"coarse", "deterministic", "diffusion", "persistence"}
    assert "fair" in reopened["crps"].attrs["estimator"]
    assert "infinite-ensemble" in reopened["ensemble_mean_rmse_fair"].attrs["definition"]
    reopened.close()


def test_mismatched_grid_and_missing_variable_name_file_and_field(scenario, tmp_path):
    truth = truth_trajectory(4)
    bad = {v: a[:, :8, :8] for v, a in truth.items()}
    small = write_reference(tmp_path / "small.nc", bad, np.ones((8, 8)))
    with pytest.raises(InputError, match=r"coarse_w0\.nc.*field 'y'.*grid size 16 differs"):
        evaluate({"coarse": scenario["coarse"]}, small)
    ds = xr.open_dataset(scenario["coarse"][0]).drop_vars("snt")
    ds.load()
    ds.to_netcdf(tmp_path / "nosnt.nc")
    with pytest.raises(InputError, match=r"nosnt\.nc.*field 'snt'.*missing"):
        evaluate({"x": tmp_path / "nosnt.nc"}, scenario["ref"])
    with pytest.raises(InputError, match="file not found"):
        evaluate({"x": tmp_path / "absent.nc"}, scenario["ref"])
    ds = xr.open_dataset(scenario["coarse"][0])
    ds.load()
    ds["sit"].attrs["units"] = "cm"
    ds.to_netcdf(tmp_path / "cm.nc")
    with pytest.raises(InputError, match=r"field 'sit'.*units 'cm'"):
        evaluate({"x": tmp_path / "cm.nc"}, scenario["ref"])


def test_reference_must_cover_the_run(scenario, tmp_path):
    short = write_reference(tmp_path / "short.nc", {v: a[:5] for v, a in scenario["truth"].items()},
                            scenario["mask"])
    with pytest.raises(InputError, match=r"short\.nc.*field 'time'.*no record at 2000-10-03T12:00"):
        evaluate({"coarse": scenario["coarse"]}, short)


def test_config_is_strict():
    with pytest.raises(ValueError, match="extra"):
        EvaluateConfig(not_a_key=1)


def test_pair_file_reference_is_turned_into_a_trajectory(scenario, tmp_path):
    truth = scenario["truth"]
    t = np.array([np.datetime64(START + timedelta(hours=12 * k)) for k in range(9)])
    pairs = xr.Dataset(coords={"time": t})
    for v in VARS:
        pairs[f"initial_{v}"] = (("time", "y", "x"), truth[v][:9], ATTRS[v])
        pairs[f"reference_{v}"] = (("time", "y", "x"), truth[v][1:10], ATTRS[v])
        pairs[f"forecast_{v}"] = (("time", "y", "x"), truth[v][1:10], ATTRS[v])
    pairs["mask"] = (("y", "x"), scenario["mask"].astype(np.int8))
    pairs.attrs["grid_dx"] = DX
    pairs.to_netcdf(tmp_path / "test.nc")
    from_pairs = evaluate({"coarse": scenario["coarse"]}, tmp_path / "test.nc", leads=(72,)).metrics
    direct = evaluate({"coarse": scenario["coarse"]}, scenario["ref"], leads=(72,)).metrics
    xr.testing.assert_allclose(from_pairs["rmse"], direct["rmse"])
    # velocity_reference=mean12h: siu/siv after the first start come from the window means, the rest is unchanged
    cfg = EvaluateConfig(velocity_reference="mean12h")
    with pytest.raises(InputError, match=r"test\.nc.*reference_siu_mean12h.*regenerate"):
        read_reference([str(tmp_path / "test.nc")], VARS, mean_velocity=True)
    for v in ("siu", "siv"):
        pairs[f"reference_{v}_mean12h"] = pairs[f"reference_{v}"] + 0.5
    pairs.to_netcdf(tmp_path / "mean.nc")
    traj, _ = read_reference([str(tmp_path / "mean.nc")], VARS, mean_velocity=cfg.velocity_reference == "mean12h")
    np.testing.assert_allclose(traj["siu"].values[1:], truth["siu"][1:10] + 0.5, rtol=1e-6)
    np.testing.assert_allclose(traj["siu"].values[0], truth["siu"][0])
    np.testing.assert_allclose(traj["sit"].values, truth["sit"][:10])
    bad = pairs.drop_vars("reference_siv")
    bad.to_netcdf(tmp_path / "bad_pairs.nc")
    with pytest.raises(InputError, match=r"bad_pairs\.nc.*field 'reference_siv'"):
        evaluate({"coarse": scenario["coarse"]}, tmp_path / "bad_pairs.nc")


def test_positional_references_per_window_files_and_window_dim(scenario, tmp_path):
    truth = scenario["truth"]
    files = []
    for start in (0, 3):
        ds = xr.Dataset({v: (("time", "y", "x"), truth[v][start:start + 7], ATTRS[v]) for v in VARS})
        ds["mask"] = (("y", "x"), scenario["mask"])
        ds.attrs["grid_dx"] = DX
        ds.to_netcdf(tmp_path / f"ref_w{start}.nc")
        files.append(tmp_path / f"ref_w{start}.nc")
    direct = evaluate({"coarse": scenario["coarse"]}, scenario["ref"], leads=(72,)).metrics
    per_window = evaluate({"coarse": scenario["coarse"]}, files, leads=(72,)).metrics
    xr.testing.assert_allclose(per_window["rmse"], direct["rmse"])
    # (window, time, y, x) reference: the deterministic file's 6 records are leads 12…72 h of windows 0 and 3
    win = xr.Dataset({v: (("window", "time", "y", "x"),
                          np.stack([truth[v][s + 1:s + 7] for s in (0, 3)]), ATTRS[v]) for v in VARS})
    win.attrs["grid_dx"] = DX
    win.to_netcdf(tmp_path / "ref_windows.nc")
    det = xr.open_dataset(scenario["deterministic"]).drop_vars("valid_time")
    det.load()
    det.to_netcdf(tmp_path / "det_index.nc")
    m = evaluate({"det": tmp_path / "det_index.nc"}, tmp_path / "ref_windows.nc", leads=(12,)).metrics
    np.testing.assert_allclose(m["rmse"].sel(model="det"), 0.02, rtol=1e-6)
    assert m["lead"].values.tolist() == [12, 24, 36, 48, 60, 72]  # first record differs from the truth ⇒ 12 h
    with pytest.raises(InputError, match=r"det_index\.nc.*field 'time'.*no CF times"):
        evaluate({"det": tmp_path / "det_index.nc"}, scenario["ref"])
    with pytest.raises(InputError, match=r"ref_w0\.nc.*field 'window'.*3 reference files for 2 windows"):
        evaluate({"coarse": scenario["coarse"]}, files + files[:1])
    # a list holding one file (the CLI's `--reference truth.nc`) is that file
    one = evaluate({"coarse": scenario["coarse"]}, [scenario["ref"]], leads=(72,)).metrics
    xr.testing.assert_allclose(one["rmse"], direct["rmse"])
    # a single window without CF times is aligned with a single reference file by position
    single = det.isel(window=0)
    single.to_netcdf(tmp_path / "det_single.nc")
    ref_single = win.isel(window=0)
    ref_single.to_netcdf(tmp_path / "ref_single.nc")
    s = evaluate({"det": tmp_path / "det_single.nc"}, tmp_path / "ref_single.nc", leads=(12,)).metrics
    np.testing.assert_allclose(s["rmse"].sel(model="det"), 0.02, rtol=1e-6)


def test_long_run_plot(scenario, tmp_path):
    from training.evaluation.plots import plot_long_run

    truth = xr.open_dataset(scenario["ref"])
    run = xr.open_dataset(scenario["diffusion"][0])
    path = plot_long_run({"diffusion": run}, truth, tmp_path / "long_run.png", mask=scenario["mask"])
    assert path.exists() and path.stat().st_size > 1000 and not list(tmp_path.glob("*.tmp-*"))
    truth.close()
    run.close()


def test_parse_run_specs(tmp_path):
    from training.evaluation.evaluate import parse_run_specs

    for name in ("c_w3.nc", "c_w0.nc", "d.nc"):
        (tmp_path / name).write_text("")
    runs = parse_run_specs([f"coarse={tmp_path}/c_w*.nc", f"diffusion={tmp_path}/d.nc"])
    assert [p.name for p in runs["coarse"]] == ["c_w0.nc", "c_w3.nc"] and len(runs["diffusion"]) == 1
    with pytest.raises(InputError, match="expected label=path"):
        parse_run_specs(["nolabel.nc"])
    with pytest.raises(InputError, match="no file matches"):
        parse_run_specs([f"x={tmp_path}/none_*.nc"])
