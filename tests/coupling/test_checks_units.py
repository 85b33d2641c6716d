"""Units of run input files are compared by UDUNITS, not as strings: same unit in another spelling passes, another
unit is refused with the file and the field named."""
import numpy as np
import pytest
import xarray as xr

from coupling.checks import check_variable
from icecorr.base.errors import InputError


def _ds(name: str, units: str) -> xr.Dataset:
    return xr.Dataset({name: (("time", "y", "x"), np.zeros((1, 3, 4)), {"units": units})})


@pytest.mark.parametrize("name, units", [("huss", "1"), ("huss", "kg/kg"), ("siu", "m/s"), ("tas", "kelvin"),
                                         ("rsds", "W/m2"), ("sic", "fraction")])
def test_same_unit_other_spelling_is_accepted(name, units):
    var = check_variable(_ds(name, units), "f.nc", name, shape=(3, 4))
    assert var.shape == (1, 3, 4)


@pytest.mark.parametrize("name, units", [("siu", "cm s-1"), ("sit", "cm"), ("tas", "degC"), ("sic", "%")])
def test_other_unit_is_refused_naming_file_and_field(name, units):
    with pytest.raises(InputError, match=rf"f\.nc.*{name}.*units '{units}'"):
        check_variable(_ds(name, units), "f.nc", name, shape=(3, 4))
