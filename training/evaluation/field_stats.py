"""Field statistics of one source (truth or a model): deformation rates and their PDFs, P90 shear, multifractal
scaling β(q), isotropic spectra; their `source`-indexed dataset and the small-scale power ratio against the truth."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from training.evaluation import deformation as deform
from training.evaluation import spectra as S
from training.evaluation.config import EvaluateConfig

#: fields whose spectra are computed ("velocity" = u and v together)
SPECTRUM_FIELDS = ("sic", "sit", "velocity")


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


def stats_dataset(sources: Mapping[str, FieldStats], spectrum_leads: Sequence[float],
                  cfg: EvaluateConfig) -> xr.Dataset:
    """The statistics of every source in one dataset along `source`: P90 shear (lead), deformation PDFs (pdf_bin),
    scaling moments and β(q) (coarse_graining, q, scale) and, with `spectrum_leads`, the spectra (spectrum_field,
    spectrum_lead, wavenumber in km⁻¹)."""
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


def small_scale_ratio(sources: Mapping[str, FieldStats], labels: Sequence[str], spectrum_leads: Sequence[float],
                      cfg: EvaluateConfig) -> xr.DataArray:
    """(model, spectrum_field, spectrum_lead): each model's power over the truth's at wavelengths up to
    `cfg.small_scale_max_wavelength_cells` cells (1 = as much small-scale structure as the truth)."""
    truth = sources["truth"]
    vals = [[[S.small_scale_power_ratio(sources[m].spectra[(f, lead)], truth.spectra[(f, lead)],
                                        cfg.small_scale_max_wavelength_cells) for lead in spectrum_leads]
             for f in SPECTRUM_FIELDS] for m in labels]
    return xr.DataArray(np.asarray(vals), dims=("model", "spectrum_field", "spectrum_lead"),
                        attrs={"long_name": "model / truth power at wavelengths ≤ "
                               f"{cfg.small_scale_max_wavelength_cells:g} cells"})
