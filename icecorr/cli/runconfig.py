"""Config files of the verbs whose sections come from several packages (the others live with their package:
`training.data.config.TwinConfig` for generate, `training.data.config.PrepareRunConfig`, `training.fit.config.TrainRunConfig`).
"""
from __future__ import annotations

from pydantic import Field, model_validator

from coupling.config import CorrectConfig, CoupleConfig
from fortran_stub.config import CoarsePhysicsConfig, GridConfig
from icecorr.base.config import StrictConfig
from icecorr.inputs.state_file import StateFileConfig
from training.evaluation.config import EvaluateConfig


class CoupleRunConfig(StrictConfig):
    """`icecorr couple` / `icecorr emulate`: the coarse model, the ensemble run and where its inputs are."""

    grid: GridConfig = Field(default_factory=GridConfig)
    physics: CoarsePhysicsConfig = Field(default_factory=CoarsePhysicsConfig)
    couple: CoupleConfig = Field(default_factory=CoupleConfig)
    initial: str | None = Field(None, description="training-pair file with the initial states (initial_* at every "
                                "window start index); or give `initial_state`")
    initial_state: StateFileConfig | None = Field(None, description="a plain state file the runs start from (an "
                                                  "analysis, a restart, another model's output) and its mapping")
    forcing: str | None = Field(None, description="forcing NetCDF (default: the `initial` pair file's {f}_t0/{f}_t1)")

    @model_validator(mode="after")
    def _one_initial_state(self) -> "CoupleRunConfig":
        if (self.initial is None) == (self.initial_state is None):
            raise ValueError("give one of `initial` (a training-pair file) and `initial_state` (a state file)")
        if self.initial_state is not None and self.forcing is None:
            raise ValueError("`initial_state` needs `forcing` (a forcing or training-pair file)")
        return self


class CorrectRunConfig(StrictConfig):
    """`icecorr correct`."""

    correct: CorrectConfig = Field(default_factory=CorrectConfig)


class CycloneRunConfig(StrictConfig):
    """`icecorr cyclone`: the moving-cyclone benchmark box (physics.md §3)."""

    grid: GridConfig = Field(default_factory=GridConfig)
    physics: CoarsePhysicsConfig = Field(default_factory=CoarsePhysicsConfig)
    # bounds with a reason: the box is a days-long benchmark; a year (730 outputs) is already far beyond it, and
    # forcing snapshots closer than a minute (the model's own sub-steps) only fill the memory
    days: float = Field(2.0, gt=0, le=365, description="length of the run (days, at most a year)")
    output_every_hours: float = Field(12.0, gt=0, le=8784, description="output interval (h)")
    window_seconds: float = Field(3600.0, ge=60, le=86400,
                                  description="forcing snapshots this far apart (s; the vortex moves)")


class EvaluateRunConfig(StrictConfig):
    """`icecorr evaluate`."""

    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
