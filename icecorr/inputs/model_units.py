"""Model units of the variables reference data provide, their plausible ranges, and the unit conversions
`icecorr prepare` and observation ingestion accept (any UDUNITS conversion: cm -> m, % -> 1, degC -> K, …, and snowfall water equivalent -> kg m-2 s-1)."""
from __future__ import annotations

from icecorr.base.errors import InputError
from icecorr.base.units import UnitsError, accumulated_conversion, same_units, unit_conversion
from icecorr.base.variables import FORCING_VARIABLES, ML_VARIABLES, VARIABLES

#: model units of every variable prepare reads (icecorr.base.variables)
MODEL_UNITS: dict[str, str] = {v: VARIABLES[v]["units"] for v in (*ML_VARIABLES, "damage", *FORCING_VARIABLES)}

#: plausible physical ranges in model units; a value outside means wrong units or a corrupt file
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "sic": (-0.01, 1.01), "sit": (-0.01, 30.0), "snt": (-0.01, 5.0), "siu": (-3.0, 3.0), "siv": (-3.0, 3.0),
    "damage": (-0.01, 1.01), "uas": (-80, 80), "vas": (-80, 80), "tas": (180.0, 330.0), "huss": (0.0, 0.05),
    "rsds": (-1.0, 1500.0), "rlds": (0.0, 800.0), "prsn": (0.0, 0.05), "uo": (-5.0, 5.0), "vo": (-5.0, 5.0),
}


def model_unit_conversion(file_units: str, model_units: str, accumulated: bool = False) -> tuple[float, float] | None:
    """(scale, offset) converting `file_units` into `model_units` (UDUNITS, icecorr.base.units), or None if they do
    not convert or cannot be parsed. `accumulated`: the field is summed over each output interval and is divided by
    that interval (s) before this conversion (J m-2 -> W m-2)."""
    try:
        return accumulated_conversion(file_units, model_units) if accumulated else \
            unit_conversion(file_units, model_units)
    except UnitsError:
        return None


def accumulation_hint(file_units: str, model_units: str, key: str) -> str:
    """A hint naming the mapping option `<key>.accumulated` when `file_units` are those of a field accumulated over
    time (J m-2 for W m-2), else ''."""
    if model_unit_conversion(file_units, model_units, accumulated=True) is None:
        return ""
    return f"; '{file_units}' is a flux accumulated over time: set {key}.accumulated: true (divided by each " \
           "record's output interval)"


def check_units_attribute(path, file_units: str | None, name: str, mapped_units: str, model_name: str) -> None:
    """A file variable's `units` attribute (if any) must say what the mapping says it is in: InputError naming the
    file and the variable otherwise."""
    if file_units is not None and not same_units(file_units, mapped_units):
        raise InputError(str(path), name, f"units attribute '{file_units}' differs from the mapping's "
                         f"'{mapped_units}' for '{model_name}'")
