"""Config of `icecorr floor` (training.data.floor): the twin's generate config plus a `floor:` section."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from icecorr.base.config import StrictConfig
from icecorr.base.variables import STEP_HOURS
from training.data.config import TwinConfig


class RedrawConfig(StrictConfig):
    """Which parts of the fine truth the coarse model cannot know are redrawn per member (all off: every member is
    the deterministic truth run)."""

    noise: bool = Field(True, description="the subgrid wind noise within each coarse block (its random seed; the "
                        "block means, which the coarse forcing holds, are kept)")
    cohesion: bool = Field(True, description="the static random cohesion field (its random seed)")
    damage: bool = Field(True, description="the damage shuffled among the ocean cells of each coarse block")


class FloorConfig(StrictConfig):
    """Truth ensembles from exact fine truth states at start dates of one run of the twin (`icecorr floor`)."""

    split: Literal["train", "val", "test"] = Field("test", description="split whose run is used")
    run: int = Field(0, ge=0, description="which seed of that split (position in generate.seeds.<split>)")
    starts: int = Field(6, ge=1, description="start dates, evenly spread over the run's retained windows")
    start_windows: Optional[list[int]] = Field(
        None, description="explicit start windows (12 h steps after the spin-up, as `couple.start_indices` on the "
                          "split's pair file), e.g. a demo's coupled windows, so that floor and hybrid are scored at "
                          "the same dates; replaces `starts`")
    members: int = Field(8, ge=2, description="truth members per start date")
    lead_days: float = Field(15.0, gt=0, description="length of every truth ensemble (days; 12 h steps)")
    seed: int = Field(0, ge=0, description="seed of the redrawn parts (member m of start i: seed, i, m)")
    redraw: RedrawConfig = Field(default_factory=RedrawConfig)

    @property
    def n_lead(self) -> int:
        """12 h steps of every ensemble."""
        return int(round(self.lead_days * 24 / STEP_HOURS))


class FloorRunConfig(TwinConfig):
    """Everything `run_floor` reads: the twin experiment (as `icecorr generate`) and the `floor` section."""

    floor: FloorConfig = Field(default_factory=FloorConfig)
