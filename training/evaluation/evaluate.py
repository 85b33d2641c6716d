"""`icecorr evaluate`: score forecast runs against the reference, write metrics (NetCDF + CSV), plots and a report.

Run files (one label → one file or a list of files, one per window):
  * `(time, [member,] y, x)`: one window per file. The lead of each record comes from the `step` variable
    (completed 12 h steps, as written by `coupling.output.TrajectoryWriter`), else from the CF `time` (time − first
    time + the first lead, see `EvaluateConfig.first_lead_hours`), else `time` is a record index.
  * `(window, time, [member,] y, x)`: several windows; `time` is the lead (`step` variable, a timedelta, or an
    index); an optional `valid_time (window, time)` datetime variable aligns it with a trajectory reference.
  A `member` dim of size 1, or none, is a deterministic run.
Reference (coarse-grained truth): a `(time, y, x)` trajectory with CF times (records are picked at each run record's
valid time); or `(window, time, y, x)` / a list of per-window files aligned with the runs by position; or a
training-pair file (`initial_*`, `reference_*`; turned into a trajectory). Its `mask` (1 = ocean) selects the scored
cells. NaN in the reference is missing data. Grids and variables must agree exactly: any mismatch is an
`InputError` naming the file and the field.

All scores are per lead (hours), area-weighted over ocean cells (closed-wall faces of siu/siv excluded).
"""
from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np
import xarray as xr
import yaml
from pydantic import BaseModel, ConfigDict, Field

from icecorr.base.variables import ML_VARIABLES, STEP_HOURS
from icecorr.base.errors import InputError
from training.evaluation import deformation as deform
from training.evaluation import metrics as M
from training.evaluation import spectra as S

#: corrected variables, in the order of docs/design.md
SPECTRUM_FIELDS = ("sic", "sit", "velocity")
PathLike = str | os.PathLike


class EvaluateConfig(BaseModel):
    """Settings of `icecorr evaluate` (strict: unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    variables: list[str] = Field(list(ML_VARIABLES), min_length=1, description="variables to score")
    sigma: dict[str, float] | None = Field(
        None, description="climatological std per variable for nRMSE; None = computed from the reference")
    first_lead_hours: Literal["auto"] | float = Field(
        "auto", description="lead of the first record of files without `step`: 'auto' = 0 if it equals the "
        "reference (an initial state), else 12")
    summary_leads_hours: tuple[float, float] = Field((12.0, 360.0), description="short and long lead of the summary")
    dx_m: float | None = Field(None, gt=0, description="cell size (m) if the reference has no x coordinate/grid_dx")
    ice_threshold: float = Field(0.15, ge=0, le=1, description="sic above which deformation is computed; ice edge")
    spectrum_detrend: Literal["none", "mean", "linear"] = "mean"
    spectrum_window: Literal["none", "hann"] = "none"
    small_scale_max_wavelength_cells: float = Field(4.0, gt=2, description="band of the small-scale power ratio")
    scaling_q: list[float] = Field([1.0, 2.0, 3.0], min_length=1)
    scaling_levels: int | None = Field(None, ge=1, description="coarsest block 2^levels cells; None = leave 2×2 blocks")
    scaling_min_valid_fraction: float = Field(0.5, gt=0, le=1)
    pdf_range: tuple[float, float] = Field((1e-4, 10.0), description="deformation PDF bin range (day⁻¹)")
    pdf_bins: int = Field(40, ge=2)
    rank_seed: int = Field(0, description="seed of the random tie-breaking in rank histograms")
    map_window: int = Field(0, ge=0)
    map_member: int = Field(0, ge=0)
    persistence: bool = Field(True, description="add a 'persistence' baseline (the reference at lead 0 kept "
                              "constant) when the first run starts with its initial state")
    plots: bool = True


# ------------------------------------------------------------------------------------------------ reading


@dataclass
class Aligned:
    """One label's forecasts and the matching reference, both with dims (window, lead, [member,] y, x)."""

    label: str
    files: list[str]
    forecast: xr.Dataset
    reference: xr.Dataset

    @property
    def members(self) -> int:
        return self.forecast.sizes.get("member", 1)


def _open(path: PathLike) -> xr.Dataset:
    try:
        ds = xr.open_dataset(path, decode_timedelta=True)
        ds.load()
        ds.close()
    except FileNotFoundError:
        raise InputError(str(path), None, "file not found") from None
    except Exception as exc:  # noqa: BLE001 - netCDF4/HDF5/xarray raise OSError, ValueError, KeyError, …
        from icecorr.base.files import describe_open_error

        raise InputError(str(path), None, describe_open_error(exc)) from None
    if "time" in ds.dims and np.issubdtype(ds["time"].dtype, np.datetime64) and ds["time"].ndim == 1:
        ds = ds.isel(time=np.flatnonzero(~np.isnat(ds["time"].values)))  # incomplete records of a killed run
    return ds


def _check_dims(ds: xr.Dataset, path: str, names: Sequence[str], allow_member: bool) -> None:
    for v in names:
        if v not in ds:
            raise InputError(path, v, f"missing (needed variables: {', '.join(names)})")
        dims = ds[v].dims
        core = [d for d in dims if d not in ("window", "member")]
        if core != ["time", "y", "x"] or (("member" in dims) and not allow_member) or dims[-2:] != ("y", "x"):
            want = "(time, [member,] y, x) or (window, time, [member,] y, x)" if allow_member else \
                "(time, y, x) or (window, time, y, x)"
            raise InputError(path, v, f"has dims {dims}, expected {want}")


def _records(ds: xr.Dataset, path: str, names: Sequence[str], allow_member: bool) -> xr.Dataset:
    """Variables as (window, time, [member,] y, x) with `time` a plain record index; keeps `valid_time` and `step`."""
    _check_dims(ds, path, names, allow_member)
    out = xr.Dataset({v: ds[v] for v in names})
    has_window = "window" in ds.dims
    valid = None
    if "valid_time" in ds and np.issubdtype(ds["valid_time"].dtype, np.datetime64):
        valid = ds["valid_time"]
    elif not has_window and np.issubdtype(ds["time"].dtype, np.datetime64):
        valid = ds["time"]
    lead = None
    if "step" in ds:
        lead = ds["step"].astype(np.float64) * STEP_HOURS
    elif np.issubdtype(ds["time"].dtype, np.timedelta64):
        lead = ds["time"] / np.timedelta64(1, "h")
    out = out.drop_vars([c for c in out.coords if c not in ("member",)])
    if valid is not None:
        out["valid_time"] = valid.drop_vars([c for c in valid.coords], errors="ignore")
    if lead is not None:
        out["lead_hours"] = lead.drop_vars([c for c in lead.coords], errors="ignore")
    if not has_window:
        out = out.expand_dims("window")
    if "member" in out.dims and out.sizes["member"] == 1:
        out = out.isel(member=0, drop=True)
    out.attrs = dict(ds.attrs)
    return out.transpose("window", "time", *(["member"] if "member" in out.dims else []), "y", "x")


def _stack_windows(parts: list[xr.Dataset], paths: list[str]) -> xr.Dataset:
    n = parts[0].sizes["time"]
    for ds, p in zip(parts, paths):
        if ds.sizes["time"] != n:
            raise InputError(p, "time", f"has {ds.sizes['time']} records, {paths[0]} has {n}: "
                             "one-file-per-window runs must have equal lengths")
        if ds.sizes.get("member") != parts[0].sizes.get("member"):
            raise InputError(p, "member", "member count differs from the other windows of this run")
    return xr.concat(parts, dim="window", data_vars="all", coords="different", compat="equals", join="exact") \
        if len(parts) > 1 else parts[0]


def _as_list(paths: PathLike | Sequence[PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [str(paths)]
    out = [str(p) for p in paths]
    if not out:
        raise InputError(None, None, "empty list of files")
    return out


def read_run(paths: PathLike | Sequence[PathLike],
             names: Sequence[str]) -> tuple[xr.Dataset, list[str], xr.Dataset]:
    """A run's forecasts as (window, time, [member,] y, x) records (see the module docstring), its file names, and
    the first file as read (for grid and units checks)."""
    files = _as_list(paths)
    raws = [_open(p) for p in files]
    for raw, p in zip(raws, files):
        if raw.attrs.get("status") not in (None, "complete"):
            warnings.warn(f"{p}: status '{raw.attrs['status']}' — scoring its complete records only", stacklevel=2)
    parts = [_records(raw, p, names, allow_member=True) for raw, p in zip(raws, files)]
    for part, p in zip(parts, files):
        for v in names:
            bad = ~np.isfinite(np.asarray(part[v].values, dtype=np.float64))
            if bad.any():
                raise InputError(p, v, f"NaN/inf in {int(bad.sum())} value(s) of complete records (a corrupt or "
                                       "failed run?)")
    return _stack_windows(parts, files), files, raws[0]


def _pairs_to_trajectory(ds: xr.Dataset, names: Sequence[str]) -> xr.Dataset:
    """Training pairs → truth trajectory: initial_v at t, plus reference_v at t + 12 h where t + 12 h is not a start."""
    initial = xr.Dataset({v: ds[f"initial_{v}"] for v in names})
    later = xr.Dataset({v: ds[f"reference_{v}"] for v in names})
    later = later.assign_coords(time=ds["time"].values + np.timedelta64(int(STEP_HOURS * 3600), "s"))
    later = later.sel(time=~np.isin(later["time"].values, ds["time"].values))
    traj = xr.concat([initial, later], dim="time").sortby("time")
    if "mask" in ds:
        traj["mask"] = ds["mask"]
    traj.attrs = dict(ds.attrs)
    return traj


def read_reference(paths: PathLike | Sequence[PathLike],
                   names: Sequence[str]) -> tuple[xr.Dataset | list[xr.Dataset], list[str]]:
    """The reference as a raw Dataset (one file: a trajectory, a window dim, or the single window of a run) or a list
    of them (several files: one per window); training-pair files are converted to a trajectory."""
    files = _as_list(paths)
    dsets = [_open(p) for p in files]
    for i, (ds, p) in enumerate(zip(dsets, files)):
        if names[0] not in ds and f"initial_{names[0]}" in ds:
            for v in names:
                for role in ("initial", "reference"):
                    if f"{role}_{v}" not in ds:
                        raise InputError(p, f"{role}_{v}", "missing in this training-pair reference file")
            _check_dims(ds, p, [f"{role}_{v}" for role in ("initial", "reference") for v in names], False)
            if "time" not in ds.variables or not np.issubdtype(ds["time"].dtype, np.datetime64):
                raise InputError(p, "time", "a training-pair reference needs CF-encoded window start times")
            dsets[i] = _pairs_to_trajectory(ds, names)
        _check_dims(dsets[i], p, names, allow_member=False)
    # several files: one per window; a list of one file is the common `--reference truth.nc` of the CLI
    return (dsets[0] if len(dsets) == 1 else dsets), files  # type: ignore[return-value]


def _grid(ref: xr.Dataset, ref_file: str, cfg: EvaluateConfig) -> float:
    if cfg.dx_m is not None:
        return cfg.dx_m
    if "x" in ref.coords and ref.sizes.get("x", 0) > 1:
        return float(np.diff(ref["x"].values[:2])[0])
    if "grid_dx" in ref.attrs:
        return float(ref.attrs["grid_dx"])
    raise InputError(ref_file, "x", "no x coordinate or grid_dx attribute: set evaluate.dx_m")


def _check_grid(run_raw: xr.Dataset, run_file: str, ref: xr.Dataset, ref_file: str) -> None:
    for d in ("y", "x"):
        if run_raw.sizes.get(d) != ref.sizes.get(d):
            raise InputError(run_file, d, f"grid size {run_raw.sizes.get(d)} differs from the reference "
                             f"{ref_file} ({ref.sizes.get(d)})")
        if d in run_raw.coords and d in ref.coords and not np.allclose(run_raw[d].values, ref[d].values):
            raise InputError(run_file, d, f"coordinates differ from those of the reference {ref_file}")


def _check_units(run_raw: xr.Dataset, run_file: str, ref: xr.Dataset, names: Sequence[str]) -> None:
    for v in names:
        a, b = run_raw[v].attrs.get("units"), ref[v].attrs.get("units") if v in ref else None
        if a is not None and b is not None and str(a) != str(b):
            raise InputError(run_file, v, f"units '{a}' differ from the reference's '{b}'")


def _is_initial(forecast: xr.Dataset, reference: xr.Dataset, names: Sequence[str]) -> bool:
    """True if the first record of every window equals the reference (the run file starts with its initial state)."""
    for v in names:
        f = forecast[v].isel(time=0)
        if "member" in f.dims:
            f = f.mean("member")
        r = reference[v].isel(time=0)
        diff = np.abs(f.values - r.values)
        if np.nanmax(diff, initial=0.0) > 1e-6 * max(1.0, float(np.nanmax(np.abs(r.values), initial=0.0))):
            return False
    return True


def align(label: str, run_paths: PathLike | Sequence[PathLike], reference_raw: xr.Dataset | list[xr.Dataset],
          reference_files: list[str], cfg: EvaluateConfig) -> Aligned:
    """Read one label's run and put the matching reference records beside it, with a `lead` (hours) coordinate."""
    names = cfg.variables
    run, files, raw0 = read_run(run_paths, names)
    ref0 = reference_raw[0] if isinstance(reference_raw, list) else reference_raw
    _check_grid(raw0, files[0], ref0, reference_files[0])
    _check_units(raw0, files[0], ref0, names)
    if isinstance(reference_raw, list):  # one reference file per window
        if len(reference_raw) != run.sizes["window"]:
            raise InputError(reference_files[0], "window", f"{len(reference_raw)} reference files for "
                             f"{run.sizes['window']} windows of '{label}'")
        refs = [_records(r, p, names, allow_member=False) for r, p in zip(reference_raw, reference_files)]
        ref = _positional(run, _stack_windows(refs, reference_files), files[0], reference_files[0])
    elif "window" in ref0.dims:
        ref = _positional(run, _records(ref0, reference_files[0], names, False), files[0], reference_files[0])
    else:
        ref1 = _records(ref0, reference_files[0], names, False)
        if run.sizes["window"] == 1 and ("valid_time" not in run or "valid_time" not in ref1):
            ref = _positional(run, ref1, files[0], reference_files[0])  # one window without CF times
        else:
            ref = _by_valid_time(run, ref1, files, reference_files[0])

    if "lead_hours" in run:
        lead = run["lead_hours"]
        if "window" in lead.dims:
            if not (lead == lead.isel(window=0)).all():
                raise InputError(files[0], "step", "windows have different lead times")
            lead = lead.isel(window=0)
        lead = lead.values.astype(np.float64)
    else:
        first = cfg.first_lead_hours
        if first == "auto":
            first = 0.0 if _is_initial(run, ref, names) else STEP_HOURS
        if "valid_time" in run:
            vt = run["valid_time"].isel(window=0) if "window" in run["valid_time"].dims else run["valid_time"]
            lead = (vt.values - vt.values[0]) / np.timedelta64(1, "h") + float(first)
        else:
            lead = np.arange(run.sizes["time"]) * STEP_HOURS + float(first)
    if np.unique(lead).size != lead.size:
        raise InputError(files[0], "time", "repeated lead times")
    drop = [c for c in ("valid_time", "lead_hours") if c in run]
    fc = run.drop_vars(drop).rename(time="lead").assign_coords(lead=lead)
    rf = ref.drop_vars([c for c in ("valid_time", "lead_hours") if c in ref]).rename(time="lead")
    rf = rf.assign_coords(lead=lead)
    for ds in (fc, rf):
        ds["lead"].attrs.update(units="hours", long_name="lead time since the window start")
    return Aligned(label=label, files=files, forecast=fc, reference=rf)


def _positional(run: xr.Dataset, ref: xr.Dataset, run_file: str, ref_file: str) -> xr.Dataset:
    if ref.sizes["window"] != run.sizes["window"]:
        raise InputError(ref_file, "window", f"{ref.sizes['window']} windows, the run {run_file} has "
                         f"{run.sizes['window']}")
    if ref.sizes["time"] < run.sizes["time"]:
        raise InputError(ref_file, "time", f"{ref.sizes['time']} records, the run {run_file} needs "
                         f"{run.sizes['time']}")
    return ref.isel(time=slice(0, run.sizes["time"]))


def _by_valid_time(run: xr.Dataset, ref: xr.Dataset, files: list[str], ref_file: str) -> xr.Dataset:
    if "valid_time" not in run:
        raise InputError(files[0], "time", "has no CF times to find the matching records in the reference "
                         f"trajectory {ref_file}: give a reference with a window dim or one file per window")
    if "valid_time" not in ref:
        raise InputError(ref_file, "time", "a (time, y, x) reference needs CF-encoded times")
    ref = ref.isel(window=0, drop=True).assign_coords(time=ref["valid_time"].isel(window=0).values)
    ref = ref.drop_vars([c for c in ("valid_time", "lead_hours") if c in ref])
    vt = run["valid_time"]
    if "window" not in vt.dims:
        vt = vt.expand_dims(window=run.sizes["window"])
    wanted = vt.values
    missing = ~np.isin(wanted, ref["time"].values)
    if missing.any():
        w, t = np.argwhere(missing)[0]
        raise InputError(ref_file, "time", f"no record at {np.datetime_as_string(wanted[w, t], unit='m')} "
                         f"needed by {files[min(w, len(files) - 1)]} ({int(missing.sum())} missing)")
    picked = ref.sel(time=xr.DataArray(wanted, dims=("window", "time")))
    return picked.drop_vars("time")


# ------------------------------------------------------------------------------------------------ scoring


def variable_weights(name: str, base: xr.DataArray) -> xr.DataArray:
    """Ocean-cell area weights for one variable: siu's east wall column and siv's north wall row are always 0
    (closed walls, docs/design.md) and are not scored."""
    w = base.copy()
    if name == "siu":
        w[:, -1] = 0.0
    elif name == "siv":
        w[-1, :] = 0.0
    return w


def score_label(a: Aligned, weights: xr.DataArray, cfg: EvaluateConfig) -> xr.Dataset:
    """Scores of one label: (variable, lead) arrays and the rank histogram (variable, lead, rank)."""
    per_var = []
    keep = ("lead",)
    for v in cfg.variables:
        f, r = a.forecast[v], a.reference[v]
        w = variable_weights(v, weights)
        if "member" in f.dims:
            s = M.ensemble_scores(f, r, w, keep, seed=cfg.rank_seed)
        else:
            s = M.deterministic_scores(f, r, w, keep)
        per_var.append(s)
    ds = xr.concat(per_var, dim=xr.DataArray(cfg.variables, dims="variable", name="variable"),
                   data_vars="all", join="outer")
    sic = a.forecast["sic"]
    sic = sic.mean("member") if "member" in sic.dims else sic  # ice edge of the ensemble mean
    ds["iiee"] = M.iiee(sic, a.reference["sic"], weights, cfg.ice_threshold, keep)
    return ds


def persistence(a: Aligned) -> Aligned | None:
    """The persistence baseline of a label's windows: the reference at lead 0 for every lead (None without lead 0)."""
    if 0.0 not in a.reference["lead"].values:
        return None
    start = a.reference.sel(lead=0.0, drop=True)
    fc = start.expand_dims(lead=a.reference["lead"].values).transpose(*a.reference["sic"].dims)
    fc = fc.assign_coords(lead=a.reference["lead"])
    return Aligned(label="persistence", files=["reference at lead 0"], forecast=fc, reference=a.reference)


def climatology(aligned: Sequence[Aligned], weights: xr.DataArray, cfg: EvaluateConfig) -> dict[str, float]:
    """σ_v for nRMSE: the configured values, or the std of the reference records of the first label."""
    if cfg.sigma is not None:
        missing = [v for v in cfg.variables if v not in cfg.sigma]
        if missing:
            raise InputError(None, f"evaluate.sigma.{missing[0]}", "no climatological std given")
        return {v: float(cfg.sigma[v]) for v in cfg.variables}
    ref = aligned[0].reference
    out = {v: M.climatological_std(ref[v], variable_weights(v, weights)) for v in cfg.variables}
    for v, s in out.items():
        if not s > 0:
            raise InputError(aligned[0].files[0], v, "reference has zero variance: give evaluate.sigma explicitly")
    return out


@dataclass
class FieldStats:
    """Deformation and spectra of one source (truth or a model)."""

    shear_p90: xr.DataArray  # (lead,) day⁻¹
    pdf_shear: deform.LogPDF
    pdf_divergence: deform.LogPDF
    scaling: dict[str, deform.ScalingResult]
    spectra: dict[tuple[str, float], S.IsotropicSpectrum] = field(default_factory=dict)


def _samples(da: xr.DataArray) -> np.ndarray:
    """(…, y, x) numpy array with every non-spatial dim flattened in front."""
    return da.transpose(..., "y", "x").values.reshape((-1,) + da.shape[-2:])


def field_stats(state: xr.Dataset, ocean: np.ndarray, dx: float, spectrum_leads: Sequence[float],
                cfg: EvaluateConfig) -> FieldStats:
    """Deformation PDFs, P90 shear per lead, β(q) (both methods) and spectra of one source's fields."""
    later = state.sel(lead=state["lead"] > 0)  # lead 0 is the shared initial state
    ice = (state["sic"] > cfg.ice_threshold) & (ocean > 0)
    u, v = state["siu"].transpose(..., "y", "x"), state["siv"].transpose(..., "y", "x")
    rates = deform.deformation_rates(u.values, v.values, dx, mask=ice.transpose(..., "y", "x").values)
    shear = xr.DataArray(rates.shear, dims=u.dims, coords={"lead": state["lead"]})
    p90 = xr.DataArray(deform.shear_percentile(rates.shear), dims=u.dims[:-2], coords={"lead": state["lead"]})
    p90 = p90.mean([d for d in p90.dims if d != "lead"])
    div = xr.DataArray(rates.divergence, dims=u.dims, coords={"lead": state["lead"]})
    edges = deform.log_bins(*cfg.pdf_range, cfg.pdf_bins)
    pool = later["lead"].values
    pdf_s = deform.log_binned_pdf(shear.sel(lead=pool).values, edges)
    pdf_d = deform.log_binned_pdf(div.sel(lead=pool).values, edges)
    lu, lv = _samples(later["siu"]), _samples(later["siv"])
    lmask = _samples(((later["sic"] > cfg.ice_threshold) & (ocean > 0)).astype(bool))
    scaling = {m: deform.deformation_scaling(lu, lv, dx, mask=lmask, q=cfg.scaling_q, levels=cfg.scaling_levels,
                                             method=m, min_valid_fraction=cfg.scaling_min_valid_fraction)
               for m in ("gradient", "magnitude")}
    kw = dict(detrend=cfg.spectrum_detrend, window=cfg.spectrum_window)
    spectra = {}
    for lead in spectrum_leads:
        at = state.sel(lead=lead)
        mask = ocean > 0
        spectra[("sic", lead)] = S.isotropic_spectrum(_samples(at["sic"]), dx, mask=mask, **kw)
        spectra[("sit", lead)] = S.isotropic_spectrum(_samples(at["sit"]), dx, mask=mask, **kw)
        spectra[("velocity", lead)] = S.velocity_spectrum(_samples(at["siu"]), _samples(at["siv"]), dx,
                                                          mask=mask, **kw)
    return FieldStats(shear_p90=p90, pdf_shear=pdf_s, pdf_divergence=pdf_d, scaling=scaling, spectra=spectra)


def nearest_leads(requested: Sequence[float], available: np.ndarray) -> list[float]:
    """For every requested lead (hours) the nearest available one, without repeats, in order."""
    out: list[float] = []
    for r in requested:
        lead = float(available[np.argmin(np.abs(available - r))])
        if lead not in out:
            out.append(lead)
    return out


def _stats_dataset(sources: Mapping[str, FieldStats], spectrum_leads: Sequence[float],
                   cfg: EvaluateConfig) -> xr.Dataset:
    names = list(sources)
    first = next(iter(sources.values()))
    src = xr.DataArray(names, dims="source", name="source")
    ds = xr.Dataset(coords={"source": names, "q": np.asarray(cfg.scaling_q, float),
                            "coarse_graining": ["gradient", "magnitude"]})
    ds["shear_p90"] = xr.concat([s.shear_p90 for s in sources.values()], dim=src, join="outer")
    ds["shear_p90"].attrs.update(units="day-1", long_name="spatial 90th percentile of shear, mean over samples")
    pdf_coords = {"pdf_centre": ("pdf_bin", first.pdf_shear.centres),
                  "pdf_lower": ("pdf_bin", first.pdf_shear.edges[:-1]),
                  "pdf_upper": ("pdf_bin", first.pdf_shear.edges[1:])}
    for key, attr in (("pdf_shear", "pdf_shear"), ("pdf_divergence", "pdf_divergence")):
        ds[key] = (("source", "pdf_bin"), np.stack([getattr(s, attr).density for s in sources.values()]),
                   {"units": "day", "long_name": f"PDF of |{key[4:]}| (day⁻¹), leads > 0 pooled; integrates "
                    "to the fraction of values inside the bins"})
    ds = ds.assign_coords(pdf_coords)
    sc = first.scaling["gradient"]
    ds = ds.assign_coords(scale_km=("scale", sc.scales_km))
    ds["scaling_moments"] = (("source", "coarse_graining", "q", "scale"),
                             np.stack([[s.scaling[m].moments for m in ("gradient", "magnitude")]
                                       for s in sources.values()]),
                             {"long_name": "⟨ε̇_tot^q⟩ at scale L", "units": "day-q"})
    ds["beta"] = (("source", "coarse_graining", "q"),
                  np.stack([[s.scaling[m].beta for m in ("gradient", "magnitude")] for s in sources.values()]),
                  {"long_name": "β(q): ⟨ε̇^q⟩ ∝ L^-β", "fit_range": sc.note()})
    ds["beta_stderr"] = (("source", "coarse_graining", "q"),
                         np.stack([[s.scaling[m].beta_stderr for m in ("gradient", "magnitude")]
                                   for s in sources.values()]))
    if spectrum_leads:
        spec0 = first.spectra[(SPECTRUM_FIELDS[0], spectrum_leads[0])]
        power = np.stack([[[s.spectra[(f, lead)].power for lead in spectrum_leads] for f in SPECTRUM_FIELDS]
                          for s in sources.values()])
        ds = ds.assign_coords(spectrum_field=list(SPECTRUM_FIELDS), spectrum_lead=list(spectrum_leads),
                              wavenumber=("wavenumber", spec0.wavenumber, {"units": "km-1"}))
        ds = ds.assign_coords(wavelength_km=("wavenumber", spec0.wavelength_km))
        ds["spectrum_power"] = (("source", "spectrum_field", "spectrum_lead", "wavenumber"), power,
                                {"long_name": "variance per radial wavenumber bin (Parseval-normalised)",
                                 "bin_width_km-1": spec0.bin_width})
    return ds


def _small_scale(sources: Mapping[str, FieldStats], labels: Sequence[str], spectrum_leads: Sequence[float],
                 cfg: EvaluateConfig) -> xr.DataArray:
    truth = sources["truth"]
    vals = [[[S.small_scale_power_ratio(sources[m].spectra[(f, lead)], truth.spectra[(f, lead)],
                                        cfg.small_scale_max_wavelength_cells) for lead in spectrum_leads]
             for f in SPECTRUM_FIELDS] for m in labels]
    return xr.DataArray(np.asarray(vals), dims=("model", "spectrum_field", "spectrum_lead"),
                        attrs={"long_name": "model / truth power at wavelengths ≤ "
                               f"{cfg.small_scale_max_wavelength_cells:g} cells"})


@dataclass
class Evaluation:
    """Everything `run_evaluate` computed: the metrics dataset and the aligned inputs (for maps)."""

    metrics: xr.Dataset
    aligned: dict[str, Aligned]
    dx: float
    ocean: xr.DataArray


def evaluate(run_paths: Mapping[str, PathLike | Sequence[PathLike]],
             reference: PathLike | Sequence[PathLike], leads: Sequence[float] = (12.0, 120.0, 360.0),
             config: EvaluateConfig | None = None) -> Evaluation:
    """Read, align and score every run; `leads` (hours) select the spectra (nearest available lead)."""
    cfg = config or EvaluateConfig()
    if not run_paths:
        raise InputError(None, "run_paths", "no runs to evaluate")
    for v in ("sic", "siu", "siv", "sit"):
        if v not in cfg.variables:
            raise InputError(None, "evaluate.variables", f"'{v}' is needed for deformation/spectra/ice edge")
    ref_raw, ref_files = read_reference(reference, cfg.variables)
    ref0 = ref_raw[0] if isinstance(ref_raw, list) else ref_raw
    dx = _grid(ref0, ref_files[0], cfg)
    ny, nx = ref0.sizes["y"], ref0.sizes["x"]
    ocean = ref0["mask"].fillna(0).astype(np.float64) if "mask" in ref0 else xr.DataArray(np.ones((ny, nx)),
                                                                                           dims=M.SPACE)
    ocean = ocean.drop_vars(list(ocean.coords))
    if ocean.dims != M.SPACE:
        raise InputError(ref_files[0], "mask", f"has dims {ocean.dims}, expected (y, x)")
    weights = M.ocean_weights(ocean, cell_area=(dx / 1000.0) ** 2)  # km²
    aligned = {label: align(label, p, ref_raw, ref_files, cfg) for label, p in run_paths.items()}
    if cfg.persistence and "persistence" not in aligned:
        baseline = persistence(next(iter(aligned.values())))
        if baseline is not None:
            aligned["persistence"] = baseline
    sigma = climatology(list(aligned.values()), weights, cfg)

    labels = list(aligned)
    model = xr.DataArray(labels, dims="model", name="model")
    scores = xr.concat([score_label(a, weights, cfg) for a in aligned.values()], dim=model, join="outer",
                       data_vars="all")
    scores["nrmse"] = M.nrmse(scores["rmse"], sigma)
    scores["members"] = ("model", [a.members for a in aligned.values()])
    scores["sigma"] = ("variable", [sigma[v] for v in cfg.variables])

    first = next(iter(aligned.values()))
    common = np.intersect1d(first.forecast["lead"].values, first.reference["lead"].values)
    for a in aligned.values():
        common = np.intersect1d(common, a.forecast["lead"].values)
    spectrum_leads = nearest_leads(leads, common) if common.size else []
    sources: dict[str, FieldStats] = {
        "truth": field_stats(first.reference, ocean.values, dx, spectrum_leads, cfg)}
    for label, a in aligned.items():
        sources[label] = field_stats(a.forecast, ocean.values, dx, spectrum_leads, cfg)
    stats = _stats_dataset(sources, spectrum_leads, cfg)
    metrics = xr.merge([scores, stats], join="outer", compat="override")
    if spectrum_leads:
        metrics["small_scale_ratio"] = _small_scale(sources, labels, spectrum_leads, cfg)
    _annotate(metrics, cfg, dx, run_paths, aligned, ref_files)
    return Evaluation(metrics=metrics, aligned=aligned, dx=dx, ocean=ocean)


def _annotate(ds: xr.Dataset, cfg: EvaluateConfig, dx: float, run_paths, aligned, ref_files) -> None:
    units = {"rmse": "variable units", "mae": "variable units", "bias": "variable units (forecast − reference)",
             "crps": "variable units", "spread": "variable units", "iiee": "km2", "nrmse": "1",
             "spread_skill_ratio": "1"}
    for k, u in units.items():
        if k in ds:
            ds[k].attrs.setdefault("units", u)
    if "crps" in ds:
        ds["crps"].attrs["estimator"] = "fair ensemble CRPS (Ferro 2014); MAE for deterministic runs"
    if "spread_skill_ratio" in ds:
        ds["spread_skill_ratio"].attrs["definition"] = "sqrt((M+1)/M) * spread / ensemble-mean RMSE"
    ds.attrs.update({
        "producer": "icecorr evaluate", "grid_dx": dx, "reference": ", ".join(ref_files),
        "runs": "; ".join(f"{k}: {', '.join(a.files)}" for k, a in aligned.items()),
        "config": yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        "weighting": "cell area over ocean cells; NaN reference = missing; siu/siv wall faces excluded",
    })


# ------------------------------------------------------------------------------------------------ outputs


def _atomic(path: Path, write) -> Path:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_metrics_netcdf(metrics: xr.Dataset, path: Path) -> Path:
    """The metrics dataset as NetCDF4 (written to a temporary name, then renamed)."""
    return _atomic(path, lambda tmp: metrics.to_netcdf(tmp, format="NETCDF4"))


def metrics_rows(metrics: xr.Dataset) -> list[dict[str, object]]:
    """Long-format rows (model, variable, lead_hours, metric, value) of every scalar score."""
    rows: list[dict[str, object]] = []
    per_lead = [k for k in metrics.data_vars if set(metrics[k].dims) <= {"model", "variable", "lead"}
                and "lead" in metrics[k].dims and "model" in metrics[k].dims]
    for k in per_lead:
        da = metrics[k]
        for m in metrics["model"].values:
            sub = da.sel(model=m)
            for var in (sub["variable"].values if "variable" in sub.dims else [""]):
                s = sub.sel(variable=var) if "variable" in sub.dims else sub
                for lead, value in zip(s["lead"].values, s.values):
                    if np.isfinite(value):
                        rows.append({"model": str(m), "variable": str(var), "lead_hours": float(lead),
                                     "metric": k, "value": float(value)})
    for src in metrics["source"].values:
        for method in metrics["coarse_graining"].values:
            for q, b in zip(metrics["q"].values, metrics["beta"].sel(source=src, coarse_graining=method).values):
                rows.append({"model": str(src), "variable": "deformation", "lead_hours": "",
                             "metric": f"beta_q{q:g}_{method}", "value": float(b)})
    if "small_scale_ratio" in metrics:
        r = metrics["small_scale_ratio"]
        for m in r["model"].values:
            for f in r["spectrum_field"].values:
                for lead in r["spectrum_lead"].values:
                    rows.append({"model": str(m), "variable": str(f), "lead_hours": float(lead),
                                 "metric": "small_scale_power_ratio",
                                 "value": float(r.sel(model=m, spectrum_field=f, spectrum_lead=lead))})
    return rows


def write_metrics_csv(metrics: xr.Dataset, path: Path) -> Path:
    """Long-format CSV of `metrics_rows` (atomic)."""
    rows = metrics_rows(metrics)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["model", "variable", "lead_hours", "metric", "value"])
            w.writeheader()
            w.writerows(rows)

    return _atomic(path, write)


def parse_run_specs(specs: Sequence[str]) -> dict[str, list[Path]]:
    """`label=path[,path…]` strings (paths may be globs, expanded in sorted order: one file per window) → run_paths.

    For the CLI: `icecorr evaluate … --run coarse=out/coarse_w*.nc --run diffusion=out/diff_w*.nc`.
    """
    import glob

    runs: dict[str, list[Path]] = {}
    for spec in specs:
        label, sep, rest = spec.partition("=")
        if not sep or not label.strip() or not rest.strip():
            raise InputError(None, "run", f"{spec!r}: expected label=path[,path…]")
        if label in runs:
            raise InputError(None, "run", f"label '{label}' given twice")
        paths: list[Path] = []
        for item in rest.split(","):
            matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
            if not matches:
                raise InputError(item, "run", f"no file matches the pattern (label '{label}')")
            paths += [Path(m) for m in matches]
        runs[label.strip()] = paths
    return runs


def run_evaluate(run_paths: Mapping[str, PathLike | Sequence[PathLike]], reference: PathLike | Sequence[PathLike],
                 out_dir: PathLike, leads: Sequence[float] = (12.0, 120.0, 360.0),
                 config: EvaluateConfig | None = None) -> Path:
    """Evaluate every labelled run against `reference`; write metrics.nc, metrics.csv, PNG plots and report.md
    into `out_dir`; return the report path. `leads` (hours) choose the maps and spectra shown."""
    from training.evaluation import plots, report  # matplotlib only when outputs are written

    cfg = config or EvaluateConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluate(run_paths, reference, leads, cfg)
    write_metrics_netcdf(ev.metrics, out / "metrics.nc")
    write_metrics_csv(ev.metrics, out / "metrics.csv")
    figures: dict[str, Path] = {}
    if cfg.plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices in maps of masked cells
            figures = plots.evaluation_figures(ev, out, leads, cfg.map_window, cfg.map_member)
    return report.write_report(ev.metrics, figures, out / "report.md", cfg.summary_leads_hours)
