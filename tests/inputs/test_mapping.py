"""`accumulated: true` (a flux summed over each output interval) belongs to forcing mappings: every other mapping
(reference state, forecasts, a run's initial state, observations) refuses it at config load instead of ignoring it."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from icecorr.inputs.mapping import ForecastFilesConfig
from icecorr.inputs.state_file import StateFileConfig
from training.data.observation_config import ObsSource

STATE = {"sic": {"name": "aice", "units": "1"}, "sit": {"name": "hi", "units": "m"},
         "siu": {"name": "uvel", "units": "m s-1"}, "siv": {"name": "vvel", "units": "m s-1"}}
ACCUMULATED = {**STATE, "sit": {"name": "hi", "units": "m", "accumulated": True}}


@pytest.mark.parametrize("build", [
    lambda v: ForecastFilesConfig(files=["f.nc"], variables=v),
    lambda v: StateFileConfig(file="s.nc", variables=v),
    lambda v: ObsSource(**v["sit"], error_std=0.1),
], ids=["forecasts", "initial_state", "observation"])
def test_only_forcing_accumulates(build):
    build(STATE)  # the same mapping without the flag is fine
    with pytest.raises(ValidationError, match="accumulated: true applies to forcing fluxes only"):
        build(ACCUMULATED)
