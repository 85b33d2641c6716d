"""benchmarks.emulator_scaling: the log-log fit on synthetic timings, the table built from them, and one tiny
measured run (shape of the table only: measured times are never asserted on)."""
from __future__ import annotations

import json
import math

import pytest

from benchmarks import emulator_scaling as es


def synthetic(slope: float = 1.0, sizes=(64, 128, 256, 512), members: int = 4) -> es.Timings:
    """Timings that follow t = 1 ms · (cells / 64²)^slope exactly (BBM 100×, mEVP 2× the 1-member emulator)."""
    emu = {n: 1e-3 * (n * n / 64 ** 2) ** slope for n in sizes}
    return es.Timings(threads=2, members=members, dx=8e3,
                      emulator={"1 member": emu, f"{members} members": {n: 3 * v for n, v in emu.items()},
                                "1 member, no attention": {n: 0.9 * v for n, v in emu.items()}},
                      bbm={n: 100 * v for n, v in emu.items() if n <= 256},
                      mevp={n: 2 * v for n, v in emu.items()})


@pytest.mark.parametrize("slope", [0.5, 1.0, 1.3])
def test_loglog_fit_recovers_an_exact_power_law(slope):
    cells = [64 ** 2, 128 ** 2, 256 ** 2, 512 ** 2]
    fit = es.loglog_fit(cells, [2.0 * (c / cells[0]) ** slope for c in cells])
    assert fit.slope == pytest.approx(slope, abs=1e-12)
    assert fit.first == pytest.approx(2.0, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.slope_stderr == pytest.approx(0.0, abs=1e-9)


def test_loglog_fit_of_a_quadratic_tail_is_super_linear():
    # linear part plus an O(cells²) term that dominates at the largest grid (a global attention)
    cells = [64 ** 2, 128 ** 2, 256 ** 2, 512 ** 2]
    t = [c * 1e-6 + (c * 1e-4) ** 2 for c in cells]
    fit = es.loglog_fit(cells, t)
    assert 1.15 < fit.slope < 2.0 and fit.slope_stderr > 0
    assert math.isnan(es.loglog_fit(cells[:2], t[:2]).slope_stderr)  # two points: no error estimate
    with pytest.raises(ValueError):
        es.loglog_fit(cells[:1], t[:1])


def test_table_from_synthetic_timings():
    t = synthetic(slope=1.0)
    table = es.build_table(t)
    sections = [r.section for r in table.rows]
    # per grid: 3 emulator variants + mEVP (+ BBM on 3 grids); 5 fitted series; 3 speed-ups; 4 rollouts
    assert sections.count("emulator") == 12 and sections.count("mevp") == 4 and sections.count("bbm") == 3
    assert sections.count("slope") == 5 and sections.count("speed-up") == 3 and sections.count("rollout") == 4
    slopes = {r.what: r for r in table.rows if r.section == "slope"}
    goal_rows = [r for r in slopes.values() if r.goal]
    assert len(goal_rows) == 2 and all(r.status == "ok" and r.value.startswith("1.00") for r in goal_rows)
    speed = [r.value for r in table.rows if r.section == "speed-up"]
    assert all(v.startswith("100×") for v in speed)
    # 3 years at 512²: 1 ms · 64 · 2190 = 140 s = 2.3 min < 30 min
    rollout = [r for r in table.rows if r.section == "rollout"]
    assert rollout[-1].value.startswith("2.3 min") and rollout[-1].status == "ok"
    assert len(table.render().splitlines()) == len(table.rows) + 2
    assert len(es.per_grid_summary(t).splitlines()) == 2 + 4


def test_bbm_at_another_cell_size_gets_rows_a_fit_and_a_speed_up():
    t = synthetic(slope=1.0)
    t.bbm_extra = {"bbm at 25 km": {n: v / 3 for n, v in t.bbm.items()}}
    table = es.build_table(t)
    assert [r.section for r in table.rows].count("bbm") == 6
    assert any(r.section == "slope" and "bbm at 25 km" in r.what and r.value.startswith("1.00") for r in table.rows)
    speed = [r.value for r in table.rows if r.section == "speed-up"]
    assert all("BBM at 25 km: 33×" in v for v in speed)
    summary = es.per_grid_summary(t).splitlines()
    assert "BBM at 25 km (s)" in summary[0] and len(summary) == 6
    assert len({line.count("|") for line in summary}) == 1  # every line has the header's columns


def test_super_linear_emulator_misses_the_slope_goal():
    table = es.build_table(synthetic(slope=1.4))
    goal_rows = [r for r in table.rows if r.section == "slope" and r.goal]
    assert goal_rows and all(r.status == "MISS" for r in goal_rows)


def test_tiny_measured_run(tmp_path):
    out = tmp_path / "out.json"
    assert es.main(["--sizes", "16", "32", "--members", "2", "--repeat", "1", "--threads", "1",
                    "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    timings = data["timings"]
    assert set(timings["emulator"]) == {"1 member", "2 members", "1 member, no attention",
                                        "1 member, global attention"}
    assert all(set(v) == {"16", "32"} for v in timings["emulator"].values())
    assert set(timings["bbm"]) == set(timings["mevp"]) == set(timings["bbm_extra"]["bbm at 25 km"]) == {"16", "32"}
    assert all(v > 0 for v in timings["bbm"].values())
    assert {"emulator, 1 member", "bbm", "mevp", "bbm at 25 km"} <= set(data["fits"])
