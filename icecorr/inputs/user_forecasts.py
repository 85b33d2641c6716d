"""The inputs of `icecorr correct` on the user's own forecast files (`correct.inputs`): the forecasts on their own
grid and land mask (`ForecastData`), their forcing (`ForcingFiles`) oriented and checked against that grid, and
each 12 h window's fields exactly as `icecorr prepare` pairs them: initial = the forecast at lead L − 12 h,
forecast = at lead L, forcing at both valid times (window (L − 12 h, L)).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from icecorr.base.errors import InputError
from icecorr.inputs.forecasts import STEP, ForecastData, ForecastWindow
from icecorr.inputs.mapping import UserForecastInputs
from icecorr.inputs.reference import ForcingFiles, decreasing_axis, open_input, resolve_input
from icecorr.inputs.regrid import projection_coordinate

SECTION = "correct.inputs"


class UserForecasts:
    """Checked access to `correct.inputs` (relative paths from `base`): `windows` (every lead L ≥ 12 h with a lead
    L − 12 h), `init_times` (datetime64, one per forecast), `leads` (the sorted window end leads, timedelta64),
    `ocean` (y, x) bool, `grid` (geography of the forecast files, see `ForecastData.grid_pieces`)."""

    def __init__(self, inputs: UserForecastInputs, base: Path):
        self.inputs = inputs
        self.forecasts = ForecastData(inputs.forecasts, None, None, base, f"{SECTION}.forecasts",
                                      inputs.mask_variable)
        self.files = self.forecasts.files
        self.shape, self.ocean = self.forecasts.shape, self.forecasts.ocean
        self.grid = self.forecasts.grid_pieces()
        self.windows: list[ForecastWindow] = self.forecasts.windows
        self.init_times = np.array(self.forecasts.init_times, dtype="datetime64[ns]")
        values, counts = np.unique(self.init_times, return_counts=True)
        if (counts > 1).any():
            raise InputError(str(self.files[0]), inputs.forecasts.dims.get("init_time", "init_time"),
                             f"initialisation {np.datetime_as_string(values[counts > 1][0], unit='m')} appears in "
                             f"{int(counts.max())} forecasts (of {[p.name for p in self.files]}): one forecast per "
                             "initialisation")
        self.leads = np.unique(np.array([self.forecasts.lead(w) for w in self.windows], dtype="timedelta64[ns]"))
        forcing_files = [resolve_input(base, f, f"{SECTION}.forcing_files") for f in inputs.forcing_files]
        flip = self._forcing_flip(forcing_files[0])
        self.forcing = ForcingFiles(forcing_files, inputs.forcing, inputs.forcing_dims, self.shape,
                                    f"{SECTION}.forcing", f"{SECTION}.forcing_dims", flip)
        for w in self.windows:  # every window's forcing is there before anything is corrected
            init = np.datetime_as_string(self.init_times[w.forecast], unit="m")
            for when in (w.start, w.start + STEP):
                self.forcing.index_of(when, f"window of the forecast from {init} ending at lead "
                                            f"{self.forecasts.lead(w) / np.timedelta64(1, 'h'):g} h")

    def _forcing_flip(self, path: Path) -> tuple[bool, bool]:
        """How the forcing's rows/columns are reversed: by its own y/x coordinates (which, in a length unit, must
        be the forecast files' x/y), else like the first forecast file."""
        ds = open_input(path)
        dims = self.inputs.forcing_dims
        flip = []
        for k, model_dim in enumerate(("y", "x")):
            dim = dims.get(model_dim, model_dim)
            own = decreasing_axis(path, ds, dim, default=None)
            flip.append(self.forecasts.flips[0][k] if own is None else own)
            mine, theirs = projection_coordinate(ds, dim), self.grid[model_dim]
            if mine is not None and theirs is not None:
                mine = mine[::-1] if flip[-1] else mine
                if mine.shape != theirs.shape or not np.allclose(mine, theirs, rtol=1e-6, atol=1e-3):
                    raise InputError(str(path), dim, f"coordinates differ from the forecast files' {model_dim} "
                                     f"(forcing {mine[:2]}…, forecasts {theirs[:2]}… m): the forcing must be on the "
                                     "forecasts' grid")
        ds.close()
        return flip[0], flip[1]

    def fields(self, window: ForecastWindow) -> tuple[dict, dict, dict, dict]:
        """(initial, forecast, forcing at the window start, forcing at its end) of `window`, each {name: (ny, nx)}
        in model units and conventions (0 on land; forcing NaN on land replaced by its ocean mean)."""
        f0 = self.forcing.at(self.forcing.index_of(window.start, "window start"), self.ocean)
        f1 = self.forcing.at(self.forcing.index_of(window.start + STEP, "window end"), self.ocean)
        return self.forecasts.state(window, 0), self.forecasts.state(window, 1), f0, f1
