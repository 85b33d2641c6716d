"""Observation pair files: gappy, noisy references for training on observations and for 4D-Var.

An observation pair file has the layout of a training-pair file (docs/design.md) with, for every ML variable v,
`reference_{v}` = the observation at t + 12 h and `residual_{v}` = observation − forecast, both NaN where v is not
observed, plus `observed_{v}` (int8, 1 = observed) and `obs_error_{v}` (observation-error std in the units of v,
NaN where unobserved). `initial_*`, `forecast_*` and the forcing are copied unchanged: they are the conditioning.
`training.fit.dataset.PairDataset` and `training.fit.optim` (batch_loss) take the loss only over observed cells and fit normalisation
statistics ignoring NaN; `training.assimilation.io` reads `reference_*` / `obs_error_*` as its observations.

Two producers:
* `synthesize` — the twin experiment's synthetic observations of a twin pair file: truth + Gaussian noise with
  realistic gaps. Each "instrument" has its own gaps, shared by its variables: `radiometer` (sic) and `altimeter`
  (sit, snt) see parallel satellite swaths whose orientation and position change every record (period
  `swath.period_km`, observed share `swath.observed_fraction` of it), `drift` (siu, siv) sees only cells with
  sic > `drift_min_sic` at least `drift_edge_distance_km` away from the ice edge (a face needs both neighbours),
  and every instrument loses whole days at random (`missing_day_probability`). Gaps and noise are a pure function
  of (seed, instrument or variable, validity time), so any subset of a file gets the same observations.
* `ingest` — observation files on the model grid or on their own (regridded: icecorr.inputs.regrid), e.g.
  concentration and drift products, with a per-variable mask (CF flag variables: icecorr.inputs.flags) and uncertainty (a variable of the file or a constant), attached to a pair file at the matching
  validity times. File, units, range and grid checks are those of `icecorr prepare` (`icecorr.inputs.reference`,
`icecorr.inputs.model_units`: called, not copied).

Run: `python -m training.data.observations synth data/test.nc -o data/test_obs.nc [--config obs.yaml] [key=value …]`
and `python -m training.data.observations ingest ingest.yaml -o data/train_obs.nc [key=value …]`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError
from icecorr.base.files import open_netcdf
from icecorr.base.variables import ML_VARIABLES, STEP_HOURS
from icecorr.inputs.mapping import VariableSource
from icecorr.inputs.flags import valid_from_mask
from training.data.io import write_netcdf_atomic
from training.data.observation_config import IngestConfig, IngestRunConfig, ObservationConfig, SynthRunConfig
from training.data.observation_gaps import face_masks, name_id, observation_masks, seeded_rng, valid_hours
from icecorr.inputs.reference import centre_to_faces, decoded_times, open_input, resolve_input
from icecorr.inputs.regrid import Regridder, model_plane, source_points
from icecorr.inputs.model_units import MODEL_UNITS, PLAUSIBLE, check_units_attribute, model_unit_conversion

PRODUCER_SYNTH = "icecorr observations synth"
PRODUCER_INGEST = "icecorr observations ingest"


# ----------------------------------------------------------------------------------------------------------------
# Writing an observation pair file
# ----------------------------------------------------------------------------------------------------------------

def _open_pairs(path: Path) -> xr.Dataset:
    ds = open_netcdf(path, "pair file")
    for dim in ("time", "y", "x"):
        if dim not in ds.sizes:
            raise InputError(str(path), dim, "missing dimension (pair files are (time, y, x))")
    for v in ML_VARIABLES:
        for p in ("initial_", "forecast_", "reference_"):
            if p + v not in ds.variables:
                raise InputError(str(path), p + v, "missing variable (docs/design.md 'Training-pair files')")
    return ds


def ocean_of(ds: xr.Dataset) -> np.ndarray:
    """(y, x) bool ocean cells of a pair file (its `mask` > 0.5; all ocean without one)."""
    if "mask" not in ds.variables:
        return np.ones((ds.sizes["y"], ds.sizes["x"]), bool)
    return np.nan_to_num(np.asarray(ds["mask"].values, dtype=np.float64)) > 0.5


def _open_faces(ocean: np.ndarray) -> dict[str, np.ndarray]:
    east, north = face_masks(ocean)
    return {"siu": east, "siv": north}


def coverage(observed: Mapping[str, np.ndarray], ocean: np.ndarray) -> dict[str, float]:
    """Observed share per variable of the ocean cells (velocities: of the open faces), over all records."""
    faces = _open_faces(ocean)
    out = {}
    for v, m in observed.items():
        where = faces.get(v, ocean)
        out[v] = float(m[:, where].sum() / max(m.shape[0] * int(where.sum()), 1))
    return out


def attach_observations(ds: xr.Dataset, obs: Mapping[str, np.ndarray], obs_error: Mapping[str, np.ndarray],
                        observed: Mapping[str, np.ndarray]) -> xr.Dataset:
    """A copy of pair dataset `ds` whose reference/residual hold the observations (NaN where unobserved), with
    `observed_{v}` and `obs_error_{v}`. Variables without observations become all NaN."""
    out = ds.copy()
    shape = (ds.sizes["time"], ds.sizes["y"], ds.sizes["x"])
    dims = ("time", "y", "x")
    for v in ML_VARIABLES:
        m = observed.get(v, np.zeros(shape, bool))
        y = np.where(m, obs[v], np.nan) if v in obs else np.full(shape, np.nan)
        err = np.where(m, obs_error[v], np.nan) if v in obs_error else np.full(shape, np.nan)
        forecast = np.asarray(ds[f"forecast_{v}"].values, np.float64)
        ref_attrs = dict(ds[f"reference_{v}"].attrs)
        units = ref_attrs.get("units", MODEL_UNITS[v])
        ref_attrs["long_name"] = f"observed {ref_attrs.get('long_name', v)} at t+12h (NaN = not observed)"
        out[f"reference_{v}"] = (dims, y.astype(ds[f"reference_{v}"].dtype), ref_attrs)
        res_attrs = dict(ds[f"residual_{v}"].attrs) if f"residual_{v}" in ds.variables else {"units": units}
        res_attrs["long_name"] = f"observation minus coarse forecast of {v} (NaN = not observed)"
        out[f"residual_{v}"] = (dims, (y - forecast).astype(ds[f"reference_{v}"].dtype), res_attrs)
        out[f"observed_{v}"] = (dims, m.astype(np.int8), {"long_name": f"{v} observed at t+12h",
                                                          "flag_values": np.array([0, 1], dtype=np.int8),
                                                          "flag_meanings": "gap observed"})
        out[f"obs_error_{v}"] = (dims, err.astype(np.float32), {"units": units,
                                                                 "long_name": f"observation-error std of {v}"})
    if "reference_damage" in out.variables:  # damage is never observed
        out["reference_damage"] = (dims, np.full(shape, np.nan, ds["reference_damage"].dtype),
                                   dict(ds["reference_damage"].attrs))
    return out


def _finish_attrs(out: xr.Dataset, producer: str, source: str, config_text: str,
                  cov: Mapping[str, float]) -> None:
    out.attrs.update(producer=producer, observation_source=source, observation_config=config_text,
                     observation_coverage=" ".join(f"{v}={c:.4f}" for v, c in cov.items()))


def synthesize(pairs: str | Path, out: str | Path, cfg: ObservationConfig | None = None) -> dict[str, float]:
    """Write synthetic observations of the twin pair file `pairs` to `out`; return the coverage per variable."""
    import yaml

    cfg = cfg or ObservationConfig()
    pairs = Path(pairs)
    with _open_pairs(pairs) as src:
        ds = src.load()
    ocean = ocean_of(ds)
    dx = float(ds.attrs.get("grid_dx", np.nan))
    if not np.isfinite(dx) and "x" in ds.coords and ds.sizes["x"] > 1:
        dx = float(np.diff(ds["x"].values[:2])[0])
    if not np.isfinite(dx) or dx <= 0:
        raise InputError(str(pairs), "grid_dx", "grid spacing unknown (no grid_dx attribute or x coordinate)")
    valid = ds["time"].values + np.timedelta64(STEP_HOURS, "h")
    truth_sic = np.asarray(ds["reference_sic"].values, np.float64)
    if not np.isfinite(truth_sic[:, ocean]).all():
        raise InputError(str(pairs), "reference_sic", "NaN in the truth: synthesize needs a complete twin pair file")
    masks = observation_masks(cfg, truth_sic, ocean, valid, dx)
    hours = valid_hours(valid)
    obs, err = {}, {}
    for v, vc in cfg.variables.items():
        truth = np.asarray(ds[f"reference_{v}"].values, np.float64)
        noise = np.stack([seeded_rng(cfg.seed, name_id(v), h, 3).standard_normal(truth.shape[1:]) for h in hours])
        y = truth + vc.noise_std * noise
        if cfg.clip_to_bounds:
            y = np.clip(y, 0.0, 1.0) if v == "sic" else (np.maximum(y, 0.0) if v in ("sit", "snt") else y)
        obs[v] = y
        err[v] = np.full(truth.shape, vc.noise_std)
    result = attach_observations(ds, obs, err, masks)
    cov = coverage(masks, ocean)
    _finish_attrs(result, PRODUCER_SYNTH, str(pairs), yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
                  cov)
    write_netcdf_atomic(result, out)
    return cov


# ----------------------------------------------------------------------------------------------------------------
# Ingestion of user observation files on the model grid
# ----------------------------------------------------------------------------------------------------------------

def _field(path: Path, ds: xr.Dataset, name: str, dims: tuple[str, str, str],
           shape: tuple[int, int] | None) -> xr.DataArray:
    """`ds[name]` with dimensions `dims` and, unless `shape` is None (regridded files), the model grid's shape."""
    if name not in ds.variables:
        raise InputError(str(path), name, f"missing; variables in the file: {sorted(ds.data_vars)}")
    var = ds[name]
    if var.dims != dims:
        raise InputError(str(path), name, f"dimensions {var.dims}, expected {dims} (set ingest.dims or reorder)")
    got = (var.sizes[dims[1]], var.sizes[dims[2]])
    if shape is not None and got != shape:
        raise InputError(str(path), name, f"grid (y, x) = {got} does not match the pair file's (ny, nx) = {shape} "
                         "(a file on its own grid needs `ingest.regrid`)")
    return var


def _converted(path: Path, var: xr.DataArray, src: VariableSource, model_name: str) -> np.ndarray:
    """Values in model units (float64); units checked as `training.data.prepare` does."""
    conv = model_unit_conversion(src.units, MODEL_UNITS[model_name])
    if conv is None:
        raise InputError(str(path), src.name, f"cannot convert units '{src.units}' (mapping for '{model_name}') to "
                         f"'{MODEL_UNITS[model_name]}'")
    check_units_attribute(path, var.attrs.get("units"), src.name, src.units, model_name)
    scale, offset = conv
    return np.asarray(var.values, np.float64) * scale + offset


def _on_model_grid(path: Path, f: xr.Dataset, src_cfg, v: str, cfg: IngestConfig, dims, pairs: xr.Dataset,
                   pairs_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, valid, uncertainty) of variable `v` of file `f` on the model grid (t, ny, nx), in model units:
    read where the file is on the model grid, else regridded (`cfg.regrid`). Valid = finite and allowed by the
    mask (icecorr.inputs.flags); the uncertainty must be positive and finite wherever a value is valid."""
    shape = None if cfg.regrid is not None else (pairs.sizes["y"], pairs.sizes["x"])
    values = _converted(path, _field(path, f, src_cfg.name, dims, shape), src_cfg, v)
    good = np.isfinite(values)
    if src_cfg.mask:
        finite = good.any()
        good &= valid_from_mask(path, _field(path, f, src_cfg.mask, dims, shape), src_cfg.valid_flags)
        if finite and not good.any():
            raise InputError(str(path), src_cfg.mask, f"marks none of the finite '{src_cfg.name}' values valid: is "
                             "the mask inverted (0 = valid)? For a CF flag variable list `valid_flags`")
    if src_cfg.error is not None:
        e = _converted(path, _field(path, f, src_cfg.error.name, dims, shape), src_cfg.error, v)
        bad = good & ~(np.isfinite(e) & (e > 0))
        if bad.any():
            k, j, i = np.argwhere(bad)[0]
            raise InputError(str(path), src_cfg.error.name, f"{int(bad.sum())} observed value(s) without a "
                             f"positive finite uncertainty, first at record {k} (y={j}, x={i})")
    else:
        e = np.full(values.shape, float(src_cfg.error_std))
    if cfg.regrid is None:
        return values, good, e
    plane = model_plane(pairs_path, pairs)
    regridder = Regridder(*source_points(path, f, dims[1:], src_cfg.name, plane), plane,
                          cfg.regrid.min_valid_fraction)
    method = cfg.regrid.methods.get(v, cfg.regrid.method)
    return getattr(regridder, method)(np.where(good, values, 0.0), good, np.where(good, e, 0.0))


def ingest(cfg: IngestConfig, out: str | Path, base_dir: str | Path | None = None) -> dict[str, float]:
    """Attach the observation files of `cfg` to its pair file and write the observation pair file `out`.

    An observation record at time τ is used for the window whose validity time t + 12 h equals τ; windows without
    a record are unobserved. Raises InputError naming the file and field for any bad input.
    """
    import yaml

    base = Path(base_dir) if base_dir else Path.cwd()
    pairs_path = resolve_input(base, cfg.pairs, "ingest.pairs")
    with _open_pairs(pairs_path) as src:
        ds = src.load()
    ocean = ocean_of(ds)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    valid = ds["time"].values.astype("datetime64[ns]") + np.timedelta64(STEP_HOURS, "h")
    position = {t: i for i, t in enumerate(valid)}
    shape = (len(valid), ny, nx)
    obs = {v: np.full(shape, np.nan) for v in cfg.variables}
    err = {v: np.full(shape, np.nan) for v in cfg.variables}
    dims = tuple(cfg.dims.get(d, d) for d in ("time", "y", "x"))
    matched = 0
    for name in cfg.files:
        path = resolve_input(base, name, "ingest.files")
        f = open_input(path)
        times = decoded_times(path, f, dims[0], "ingest")
        rows = np.array([position.get(t, -1) for t in times])
        use = rows >= 0
        matched += int(use.sum())
        for v, src_cfg in cfg.variables.items():
            values, good, e = _on_model_grid(path, f, src_cfg, v, cfg, dims, ds, pairs_path)
            lo, hi = PLAUSIBLE[v]
            vals = values[good & ocean]
            if vals.size and (vals.min() < lo or vals.max() > hi):
                raise InputError(str(path), src_cfg.name, f"values {vals.min():.4g}..{vals.max():.4g} "
                                 f"{MODEL_UNITS[v]} outside the plausible range [{lo}, {hi}] after conversion "
                                 f"from '{src_cfg.units}' (wrong units?)")
            values = np.where(good & ocean, values, np.nan)
            obs[v][rows[use]] = values[use]
            err[v][rows[use]] = np.where(np.isfinite(values[use]), e[use], np.nan)
    if matched == 0:
        raise InputError(str(resolve_input(base, cfg.files[0], "ingest.files")), dims[0],
                         f"no observation time equals a validity time (t + 12 h) of {pairs_path} "
                         f"({np.datetime_as_string(valid[0], unit='m')} .. {np.datetime_as_string(valid[-1], unit='m')})")
    if "siu" in cfg.variables and cfg.velocity_points == "centre":
        # a face is observed where both neighbouring centres are; values are their mean (prepare's averaging)
        for t in range(shape[0]):
            cells = np.isfinite(obs["siu"][t]) & np.isfinite(obs["siv"][t])
            u, v = centre_to_faces(np.nan_to_num(obs["siu"][t]), np.nan_to_num(obs["siv"][t]), ocean)
            east, north = face_masks(cells & ocean)
            eu, ev = centre_to_faces(np.nan_to_num(err["siu"][t]), np.nan_to_num(err["siv"][t]), ocean)
            obs["siu"][t], obs["siv"][t] = np.where(east, u, np.nan), np.where(north, v, np.nan)
            err["siu"][t], err["siv"][t] = np.where(east, eu, np.nan), np.where(north, ev, np.nan)
    faces = _open_faces(ocean)
    observed = {}
    for v in cfg.variables:
        where = faces.get(v, ocean)
        observed[v] = np.isfinite(obs[v]) & where
    result = attach_observations(ds, obs, err, observed)
    cov = coverage(observed, ocean)
    _finish_attrs(result, PRODUCER_INGEST, " ".join(cfg.files), yaml.safe_dump(cfg.model_dump(mode="json"),
                                                                                sort_keys=False), cov)
    write_netcdf_atomic(result, out)
    return cov


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m training.data.observations {synth PAIRS | ingest CONFIG} -o OUT [key.sub=value …]`."""
    from icecorr.base.config import ConfigError, load_config

    p = argparse.ArgumentParser(prog="python -m training.data.observations", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("synth", help="synthetic gappy, noisy observations of a twin pair file")
    s.add_argument("pairs", help="twin pair file (e.g. data/test.nc)")
    s.add_argument("--config", default=None, help="YAML with an `observations:` section")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("overrides", nargs="*", help="e.g. observations.seed=3")
    g = sub.add_parser("ingest", help="attach observation files on the model grid to a pair file")
    g.add_argument("config", help="YAML with an `ingest:` section")
    g.add_argument("-o", "--output", required=True)
    g.add_argument("overrides", nargs="*")
    args, extra = p.parse_known_args(argv)
    # overrides may also follow the options (argparse stops a positional list at the first option)
    bad = [a for a in extra if a.startswith("-") or "=" not in a]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = list(args.overrides) + extra
    try:
        if args.action == "synth":
            cfg = load_config(SynthRunConfig, args.config, args.overrides).observations
            cov = synthesize(args.pairs, args.output, cfg)
        else:
            cfg = load_config(IngestRunConfig, args.config, args.overrides).ingest
            cov = ingest(cfg, args.output)  # relative names from the working directory, as prepare
    except (ConfigError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}; observed share per variable: "
          + ", ".join(f"{v} {c:.3f}" for v, c in cov.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
