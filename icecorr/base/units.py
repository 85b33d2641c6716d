"""Units parsed and converted by UDUNITS-2 (through cf-units), never compared as strings.

'm/s', 'm s-1', 'm s**-1' and 'meter second-1' are one unit; 'cm s-1' converts to 'm s-1' by 0.01; '%' to '1' by
0.01; 'degC' to 'K' by +273.15. A few spellings that data sets use but UDUNITS does not know ('fraction', '-', '0-1',
'' for a dimensionless field) are read as '1'. Snowfall given as a water-equivalent rate ('mm day-1', 'm s-1') converts
to a mass flux (kg m-2 s-1) with the density of water: the one conversion UDUNITS cannot make by itself.
An accumulated field (J m-2 of radiation, kg m-2 or m of snowfall summed over each output interval) becomes a rate
by dividing by that interval: `accumulated_conversion` converts the units divided by a second (J m-2 s-1 = W m-2).
"""
from __future__ import annotations

from functools import lru_cache

#: spellings of "dimensionless" that data sets use and UDUNITS does not parse (or parses as "no unit")
_DIMENSIONLESS = frozenset({"", "-", "1", "fraction", "0-1", "dimensionless", "unitless", "none", "n/a"})
#: kg m-3: a water-equivalent depth rate (m s-1) times this is a mass flux (kg m-2 s-1)
WATER_DENSITY = 1000.0


class UnitsError(ValueError):
    """A units string UDUNITS cannot parse, or two units that do not convert into each other."""


@lru_cache(maxsize=256)
def parse_units(text: str | None):
    """The cf_units.Unit of `text` (UnitsError if UDUNITS cannot parse it); the dimensionless spellings above are '1'."""
    import cf_units

    spelled = "" if text is None else str(text).strip()
    if spelled.lower() in _DIMENSIONLESS:
        spelled = "1"
    try:
        return cf_units.Unit(spelled)
    except ValueError as exc:
        raise UnitsError(f"units '{text}' are not UDUNITS units ({exc})") from None


def _is_mass_flux(unit) -> bool:
    return unit.is_convertible(parse_units("kg m-2 s-1"))


def _is_speed(unit) -> bool:
    return unit.is_convertible(parse_units("m s-1"))


@lru_cache(maxsize=256)
def unit_conversion(from_units: str | None, to_units: str | None) -> tuple[float, float]:
    """(scale, offset) with value_in_to = value_in_from · scale + offset; UnitsError naming both if they do not
    convert (a water-equivalent rate converts to a mass flux through WATER_DENSITY)."""
    src, dst = parse_units(from_units), parse_units(to_units)
    extra = 1.0
    if not src.is_convertible(dst):
        if _is_speed(src) and _is_mass_flux(dst):       # snowfall as water-equivalent depth per time
            src, extra = src * parse_units("kg m-3"), WATER_DENSITY
        else:
            raise UnitsError(f"units '{from_units}' cannot be converted to '{to_units}'")
    # rounded to 14 significant digits: convert(1) - convert(0) leaves float residue (degC -> K: 274.15 - 273.15)
    offset = float(f"{float(src.convert(0.0, dst)):.14g}")
    scale = float(f"{float(src.convert(1.0, dst)) - float(src.convert(0.0, dst)):.14g}")
    if extra != 1.0:
        if offset != 0.0:
            raise UnitsError(f"units '{from_units}' cannot be converted to '{to_units}'")
        scale *= extra
    return scale, offset


def accumulated_conversion(from_units: str | None, to_units: str | None) -> tuple[float, float]:
    """(scale, offset) converting a field accumulated over an interval, in `from_units`, divided by that interval in
    seconds, into the rate `to_units` (J m-2 -> W m-2, kg m-2 -> kg m-2 s-1, m of water -> kg m-2 s-1); UnitsError
    if the per-second units do not convert, or need an offset."""
    rate = str(parse_units(from_units) / parse_units("s"))
    try:
        scale, offset = unit_conversion(rate, to_units)
    except UnitsError:
        raise UnitsError(f"units '{from_units}' per second cannot be converted to '{to_units}'") from None
    if offset != 0.0:
        raise UnitsError(f"units '{from_units}' per second convert to '{to_units}' only with an offset")
    return scale, offset


def same_units(a: str | None, b: str | None) -> bool:
    """True if `a` and `b` are the same unit in any spelling ('1' and 'kg kg-1' are; 'm' and 'cm' are not);
    False also when either cannot be parsed or they do not convert."""
    try:
        scale, offset = unit_conversion(a, b)
    except UnitsError:
        return False
    return abs(scale - 1.0) <= 1e-12 and offset == 0.0


def is_length(text: str | None) -> bool:
    """True if `text` parses as a length (m, km, meters, metre, …): the units a projection coordinate may have."""
    try:
        return parse_units(text).is_convertible(parse_units("m"))
    except UnitsError:
        return False
