"""Units through UDUNITS: spellings, conversions, the water-equivalent snowfall rule, clear errors."""
import pytest

from icecorr.base.units import UnitsError, is_length, parse_units, same_units, unit_conversion


@pytest.mark.parametrize("a, b", [("m/s", "m s-1"), ("m s**-1", "m s-1"), ("meters", "m"), ("metre", "m"),
                                  ("kg kg-1", "1"), ("fraction", "1"), ("-", "1"), ("", "1"), ("Celsius", "degC"),
                                  ("W/m2", "W m-2"), ("J m-2 s-1", "W m-2")])
def test_same_unit_in_other_spellings(a, b):
    assert same_units(a, b)


@pytest.mark.parametrize("a, b, scale, offset", [("%", "1", 0.01, 0.0), ("cm", "m", 0.01, 0.0),
                                                 ("km", "m", 1000.0, 0.0), ("cm s-1", "m s-1", 0.01, 0.0),
                                                 ("degC", "K", 1.0, 273.15), ("K", "degC", 1.0, -273.15),
                                                 ("g kg-1", "kg kg-1", 1e-3, 0.0)])
def test_conversions(a, b, scale, offset):
    assert unit_conversion(a, b) == (scale, offset)


def test_snowfall_water_equivalent_converts_to_mass_flux():
    # 1 mm of water per day is 1 kg m-2 per day
    assert unit_conversion("mm day-1", "kg m-2 s-1")[0] == pytest.approx(1 / 86400, rel=1e-12)
    assert unit_conversion("m s-1", "kg m-2 s-1") == (1000.0, 0.0)


def test_errors_name_the_units():
    with pytest.raises(UnitsError, match="'bananas' are not UDUNITS"):
        parse_units("bananas")
    with pytest.raises(UnitsError, match="'K' cannot be converted to 'm'"):
        unit_conversion("K", "m")
    assert not same_units("cm", "m") and not same_units("bananas", "m")


def test_lengths():
    assert is_length("km") and is_length("meters") and is_length("m")
    assert not is_length("degrees_east") and not is_length("1") and not is_length("bananas")
