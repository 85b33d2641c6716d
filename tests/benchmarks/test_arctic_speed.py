"""benchmarks.arctic_speed at 200 km: the rows of one tiny measured run (shape of the table only: measured times
are never asserted on) and the grid it times (the region's, land included)."""
from __future__ import annotations

from benchmarks import arctic_speed as a


def test_rows_of_a_tiny_run_on_the_region_grid():
    table, raw = a.measure(200.0, [1], repeat=1, bbm_steps=1, config=a.REGION / "train_emulator.yaml",
                           checkpoints={})
    assert raw["grid"] == [16, 24] and 0 < raw["ocean_cells"] < 16 * 24  # the Arctic has land
    assert set(raw["emulator"]) == {"diffusion, 1 thread(s)", "deterministic, 1 thread(s)"}
    assert all(s > 0 for s in raw["emulator"].values()) and raw["bbm_s"] > 0
    sections = [r.section for r in table.rows]
    assert sections.count("emulator") == 2 and sections.count("bbm") == 1
    assert sections.count("speed-up") == 2 and sections.count("rollout") == 2
    assert all(r.status in ("ok", "MISS") for r in table.rows if r.section in ("emulator", "rollout"))
