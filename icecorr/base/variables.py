"""CF metadata of every state, forcing and diagnostic variable (docs/design.md names), for every NetCDF writer.

`VARIABLES[name]` is a plain dict with `units`, `long_name`, `standard_name` (only where CF defines one) and
`location`, the C-grid point the value lives on (T centre, U east face, V north face, Z north-east corner).
Use `attrs(name)` for the attributes to put on a variable in a file (everything except `location`).
"""
from __future__ import annotations

from types import MappingProxyType

#: the product's time step, one call of a model's `step` and one correction: 12 h in seconds
STEP_SECONDS = 43_200
STEP_HOURS = STEP_SECONDS // 3600

#: the physical range of each bounded state variable (lower, upper; None = unbounded)
RANGES: dict[str, tuple[float, float | None]] = {"sic": (0.0, 1.0), "sit": (0.0, None), "snt": (0.0, None),
                                                 "damage": (0.0, 1.0)}

#: what the corrector predicts and corrects, in the order the network sees them
ML_VARIABLES = ("sic", "sit", "snt", "siu", "siv")
FORCING_VARIABLES = ("uas", "vas", "tas", "huss", "rsds", "rlds", "prsn", "uo", "vo")
COARSE_STATE_VARIABLES = ("sic", "sit", "snt", "siu", "siv", "sivol", "snvol", "tsi", "tos", "sig1", "sig2", "sig12")


def _v(units: str, long_name: str, standard_name: str | None = None, location: str = "T") -> dict[str, str]:
    d = {"units": units, "long_name": long_name, "location": location}
    if standard_name:
        d["standard_name"] = standard_name
    return d


_TABLE = {
    # state
    "sic": _v("1", "sea-ice concentration", "sea_ice_area_fraction"),
    "sit": _v("m", "sea-ice thickness of the ice-covered part (volume / concentration)", "sea_ice_thickness"),
    "snt": _v("m", "snow thickness on the ice-covered part", "surface_snow_thickness"),
    "siu": _v("m s-1", "sea-ice x-velocity on the east cell face", "sea_ice_x_velocity", "U"),
    "siv": _v("m s-1", "sea-ice y-velocity on the north cell face", "sea_ice_y_velocity", "V"),
    "damage": _v("1", "sea-ice damage (1 = undamaged, 0 = fully damaged)"),
    "sivol": _v("m", "sea-ice volume per unit cell area"),
    "snvol": _v("m", "snow volume per unit cell area"),
    "tsi": _v("degC", "sea-ice or snow surface temperature", "sea_ice_surface_temperature"),
    "tos": _v("degC", "slab mixed-layer temperature", "sea_surface_temperature"),
    "sig1": _v("N m-1", "vertically integrated stress sigma11 + sigma22"),
    "sig2": _v("N m-1", "vertically integrated stress sigma11 - sigma22"),
    "sig11": _v("N m-1", "vertically integrated stress sigma11"),
    "sig22": _v("N m-1", "vertically integrated stress sigma22"),
    "sig12": _v("N m-1", "vertically integrated shear stress sigma12 at the north-east cell corner", None, "Z"),
    "cohesion": _v("Pa", "sea-ice cohesion"),
    # forcing (cell centres)
    "uas": _v("m s-1", "10 m wind x-component", "x_wind"),
    "vas": _v("m s-1", "10 m wind y-component", "y_wind"),
    "tas": _v("K", "2 m air temperature", "air_temperature"),
    "huss": _v("kg kg-1", "2 m specific humidity", "specific_humidity"),
    "rsds": _v("W m-2", "surface downwelling short-wave radiation", "surface_downwelling_shortwave_flux_in_air"),
    "rlds": _v("W m-2", "surface downwelling long-wave radiation", "surface_downwelling_longwave_flux_in_air"),
    "prsn": _v("kg m-2 s-1", "snowfall flux", "snowfall_flux"),
    "uo": _v("m s-1", "ocean surface current x-component", "sea_water_x_velocity"),
    "vo": _v("m s-1", "ocean surface current y-component", "sea_water_y_velocity"),
    # diagnostics
    "divergence": _v("s-1", "sea-ice velocity divergence", "divergence_of_sea_ice_velocity"),
    "shear": _v("s-1", "sea-ice maximum shear rate ((D_T^2 + D_S^2)^(1/2))"),
}

VARIABLES = MappingProxyType({k: MappingProxyType(v) for k, v in _TABLE.items()})


def attrs(name: str) -> dict[str, str]:
    """CF attributes (units, long_name, standard_name if any) of `name`; KeyError names unknown variables."""
    try:
        entry = VARIABLES[name]
    except KeyError:
        raise KeyError(f"no CF metadata for variable '{name}' (known: {', '.join(VARIABLES)})") from None
    return {k: v for k, v in entry.items() if k != "location"}
