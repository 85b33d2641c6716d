"""Faults of issue 21 at the library level (no CLI): a restart continued with another corrector, one corrector id
for outputs and restarts, and an ensemble output whose closing fails for one window."""
from __future__ import annotations

import numpy as np
import pytest

from corrector.inference import Corrector
from coupling.config import CoupleConfig
from coupling.couple import run_couple
from coupling.emulate import run_emulate
from coupling.ensemble import checkpoint_id
from coupling.ensemble_output import EnsembleOutput, output_paths, table_attrs
from coupling.output import open_trajectory
from coupling.restart import checkpoint_file_id
from icecorr.base.errors import InputError
from tests.mpi_scripts import case
from tests.mpi_scripts.tiny import tiny_checkpoint, tiny_corrector

VARS = ["sic", "sit", "snt", "siu", "siv"]
FORCING = case.forcing(16, 12)


def run(verb: str, tmp_path, name: str, checkpoint=None, corrector=None, restart=None):
    """A 2-step run of `verb` from the case's initial state, restart files every step."""
    cfg = CoupleConfig(members=2, n_steps=2, restart_interval=1, output_options={"precision": "float64"},
                       checkpoint=None if checkpoint is None else str(checkpoint))
    out = tmp_path / f"{name}.nc"
    if verb == "couple":
        return run_couple(cfg, case.initial_state(), FORCING, out, restart=restart, comm=None, grid=case.grid(),
                          corrector=corrector)
    return run_emulate(cfg, case.initial_state(), FORCING, out, restart=restart, comm=None, corrector=corrector)


@pytest.mark.parametrize("verb", ["couple", "emulate"])
def test_restart_with_another_checkpoint_is_refused_by_the_library(tmp_path, verb):
    """Was: only the CLI compared the checkpoints; `run_couple`/`run_emulate` continued one output with another
    corrector."""
    mode = "residual" if verb == "couple" else "emulator"
    first = tiny_checkpoint(tmp_path / "first.pt", mode=mode)
    other = tiny_checkpoint(tmp_path / "other.pt", mode=mode, steps=3)  # another file content
    run(verb, tmp_path, "a", checkpoint=first)
    restart = tmp_path / "a.restart.step00001.nc"
    with pytest.raises(InputError, match=r"a.restart.step00001.nc, field 'checkpoint_id': the run was started with "
                                         r"checkpoint sha256:\w+ \(.*first.pt\) but this run uses checkpoint "
                                         r"sha256:\w+ \(.*other.pt\)"):
        run(verb, tmp_path, "b", checkpoint=other, restart=restart)
    with pytest.raises(InputError, match="field 'checkpoint_id'"):  # a loaded corrector is checked by its file
        run(verb, tmp_path, "c", corrector=Corrector.load(other), restart=restart)
    with pytest.raises(InputError, match="but this run uses no checkpoint"):
        run(verb, tmp_path, "d", restart=restart)
    # the same checkpoint continues
    (path,) = run(verb, tmp_path, "e", checkpoint=first, restart=restart)
    assert open_trajectory(path).sizes["time"] == 3


def test_checkpoint_id_is_the_restart_files_id(tmp_path):
    """One computation of a corrector's id for output attributes and restart checks."""
    ck = tiny_checkpoint(tmp_path / "c.pt")
    assert checkpoint_id(Corrector.load(ck)) == checkpoint_file_id(ck)
    assert checkpoint_id(Corrector.zero()) == checkpoint_file_id(None) == "zero"
    assert checkpoint_id(tiny_corrector()) == "in-memory"


class FailingWriter:
    """A window's writer whose `close` closes the real writer as failed, then raises (as a full disk would)."""

    def __init__(self, inner, message: str):
        self.inner, self.message = inner, message

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def close(self, status: str = "complete") -> None:
        self.inner.close("failed")
        raise OSError(self.message)


def test_ensemble_output_closes_every_window_when_one_fails(tmp_path):
    """Was: the first window's failing `close("complete")` left the others open and under their partial names."""
    starts = [0, 1, 2]
    cfg = CoupleConfig(members=2, n_steps=1, start_indices=starts, output_options={"precision": "float64"})
    paths = output_paths(tmp_path / "o.nc", starts)
    attrs = {v: table_attrs(v, {}) for v in VARS}
    out = EnsembleOutput(cfg, paths, VARS, attrs, (16, 16), 16_000.0, FORCING, {}, "emulate", None, VARS,
                         {v: attrs[v]["units"] for v in VARS})
    state = np.stack([np.stack([case.initial_state()[v] for v in VARS])] * (len(starts) * cfg.members))
    out.record(0, None, None, state)
    out.writers[0] = FailingWriter(out.writers[0], "window 0: No space left on device")
    out.writers[2] = FailingWriter(out.writers[2], "window 2: No space left on device")
    with pytest.raises(OSError, match="window 0"):
        out.close("complete")
    assert not paths[0].exists() and not paths[2].exists()
    np.testing.assert_array_equal(open_trajectory(paths[1])["sic"].values[0, 0], case.initial_state()["sic"])
    # the failed windows keep their partial files (for --restart), the good one is complete under its name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o_w00000.nc.partial", "o_w00001.nc",
                                                          "o_w00002.nc.partial"]
