"""Typed configuration of the grid and of the Fortran physics (mirrors the Fortran parameter types)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StrictConfig(BaseModel):
    """Base of every config section: unknown keys are an error, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GridConfig(StrictConfig):
    """Regular Arakawa C-grid with closed walls. Default: the 512 km benchmark box at 16 km."""

    nx: int = Field(32, ge=4, description="cells along x")
    ny: int = Field(32, ge=4, description="cells along y")
    dx: float = Field(16_000.0, gt=0, description="cell size (m), same along x and y")

    def refined(self, factor: int) -> "GridConfig":
        """The same box at `factor` times finer resolution (twin-experiment truth grid)."""
        return GridConfig(nx=self.nx * factor, ny=self.ny * factor, dx=self.dx / factor)
