"""coupling.fortran_kit: the Fortran driver's inputs are exactly what the Python physics rank would use."""
from __future__ import annotations

import numpy as np

from coupling.config import CoupleConfig
from coupling.fortran_kit import STATE_NAMES, namelist_value, write_kit
from fortran_stub.config import CoarsePhysicsConfig
from tests.mpi_scripts import case


def test_namelist_values_round_trip():
    assert namelist_value(True) == ".true." and namelist_value(False) == ".false."
    assert namelist_value(3) == "3"
    for x in (0.1, 1e-12, 16000.0, 2.0334, 1 / 3, 5e300):
        text = namelist_value(x)
        assert float(text) == x and any(c in text for c in ".eE")
    assert namelist_value([5, 16]) == "5, 16"


def test_kit_files_hold_the_python_models_numbers(tmp_path):
    n, steps = 16, 3
    cfg = CoupleConfig(members=2, n_steps=steps, start_indices=[0, 1])
    physics = CoarsePhysicsConfig(n_evp=50)
    kit = write_kit(case.grid(n), physics, cfg, case.initial_state(n), case.forcing(n), tmp_path / "kit")
    text = (kit / "kit.nml").read_text()
    assert "n_windows = 2" in text and "pd%n_evp = 50" in text and "pd%limiter = 3" in text
    assert "tp%latent_heat_on = .true." in text
    # snapshot forcing: windows 0..3 and 1..4 share their snapshots: 5 distinct records
    pairs = np.fromfile(kit / "forcing_pairs.bin", dtype=np.int32).reshape(2, steps, 2)
    assert pairs[0].tolist() == [[1, 2], [2, 3], [3, 4]] and pairs[1].tolist() == [[2, 3], [3, 4], [4, 5]]
    records = np.fromfile(kit / "forcing.bin").reshape(5, 9, n, n)  # C view of Fortran (nx, ny, 9) records
    f0, _ = case.forcing(n).pair(2)
    assert np.array_equal(records[2, 0], f0["uas"])  # record 3 = snapshot 2; (ny, nx) in C order
    state = np.fromfile(kit / "initial.bin")
    per_window = len(STATE_NAMES) * n * n + (n + 1) ** 2
    assert state.size == 2 * per_window
    ini = case.initial_state(n)
    sic = state[:n * n].reshape(n, n)
    assert np.array_equal(sic, ini["sic"])
    assert np.array_equal(state[n * n:2 * n * n].reshape(n, n), ini["sit"] * ini["sic"])  # volume as set_state
