"""The twin's predictability floor (`icecorr floor`, `floor.nc` beside the pair files) in an evaluation: where it is,
its ratios on the evaluation's leads, and the report's table of RMSE / coarse RMSE beside it.

The floor ratio at a lead is the truth ensemble's spread over the coarse model's RMSE (training.data.floor): what a
perfect corrector's RMSE / coarse RMSE cannot go below.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from icecorr.base.errors import InputError

#: the floor file's name beside the pair files (written by `icecorr floor`)
FLOOR_FILE = "floor.nc"
#: leads (hours) of the report's floor table: 12 h, 5, 10 and 15 days
TABLE_LEADS = (12.0, 120.0, 240.0, 360.0)
#: labels that are baselines, not correctors (no row of their own in the floor table)
BASELINES = ("coarse", "persistence", "climatology")


def floor_path(explicit: str | Path | None, reference_files: Sequence[str | Path]) -> Path | None:
    """The floor file: `explicit` (`evaluate.floor`; InputError if missing), else `floor.nc` beside the first
    reference file if there is one, else None."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise InputError(str(path), "evaluate.floor", "floor file not found (made by `icecorr floor`)")
        return path
    if not reference_files:
        return None
    beside = Path(reference_files[0]).parent / FLOOR_FILE
    return beside if beside.is_file() else None


def floor_scores(path: str | Path, variables: Sequence[str], leads: Sequence[float]) -> xr.Dataset:
    """`floor_ratio`, `floor_ratio_pairs` and `floor_spread` (variable, lead) of the floor file on `leads` (hours):
    NaN where the floor has no such lead or variable. floor_ratio is against the coupled 'coarse' runs,
    floor_ratio_pairs against the pair files' coarse forecasts (the denominator of offline scores)."""
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    if "lead_time" not in ds.dims:
        raise InputError(str(path), "lead_time", "not a floor file of `icecorr floor` (no lead_time)")
    out = {}
    for kind in ("ratio", "ratio_pairs", "spread"):
        rows = []
        for v in variables:
            name = f"{v}_floor_{kind}"
            if name in ds:
                rows.append(ds[name].reindex(lead_time=np.asarray(leads, dtype=float)).values)
            else:
                rows.append(np.full(len(leads), np.nan))
        out[f"floor_{kind}"] = (("variable", "lead"), np.array(rows, dtype=float), {
            "long_name": f"predictability floor of the twin ({kind})", "source": str(path),
            "units": "variable units" if kind == "spread" else "1"})
    return xr.Dataset(out, coords={"variable": list(variables), "lead": np.asarray(leads, dtype=float)})


def _lead_label(hours: float) -> str:
    return f"{hours:g} h" if hours < 48 else f"{hours / 24:g} d"


def floor_table(m: xr.Dataset, leads: Sequence[float] = TABLE_LEADS) -> str | None:
    """Markdown table per variable: every model's RMSE / coarse RMSE (ensemble mean for ensembles) and the floor
    ratio at `leads`; None without a floor in the metrics."""
    if "floor_ratio" not in m:
        return None
    leads = [lead for lead in leads if lead in m["lead"].values]
    if not leads:
        return None
    has_coarse = "coarse" in m["model"].values
    models = [str(x) for x in m["model"].values if str(x) not in BASELINES] if has_coarse else []
    lines = ["| variable | RMSE / coarse RMSE | " + " | ".join(_lead_label(lead) for lead in leads) + " |",
             "|---|---|" + "---|" * len(leads)]

    def fmt(x: float) -> str:
        return f"{x:.2f}" if np.isfinite(x) else "–"

    for v in m["variable"].values:
        for mod in models:
            ratio = [float(m["rmse"].sel(model=mod, variable=v, lead=lead) /
                           m["rmse"].sel(model="coarse", variable=v, lead=lead)) for lead in leads]
            lines.append(f"| {v} | {mod} | " + " | ".join(fmt(x) for x in ratio) + " |")
        floor = [float(m["floor_ratio"].sel(variable=v, lead=lead)) for lead in leads]
        lines.append(f"| {v} | **floor** | " + " | ".join(fmt(x) for x in floor) + " |")
    return "\n".join(lines)


FLOOR_NOTE = (
    "The floor (`icecorr floor`, {path}) is the spread of truth ensembles that differ only in what the coarse "
    "model cannot know (within-block wind noise, static cohesion, damage within each block) over the uncorrected "
    "coarse model's RMSE, from the same start states: a perfect corrector's RMSE / coarse RMSE cannot be below it.")


def floor_section(m: xr.Dataset) -> list[str]:
    """The report's lines on the floor (heading, note, table), or none without a floor."""
    table = floor_table(m)
    if table is None:
        return []
    path = m["floor_ratio"].attrs.get("source", FLOOR_FILE)
    return ["## RMSE relative to the coarse model and the predictability floor", "",
            FLOOR_NOTE.format(path=f"`{path}`"), "", table, ""]
