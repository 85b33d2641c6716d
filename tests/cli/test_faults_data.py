"""Data faults of issue 21, driven through the command line: an unmasked fill value, an all-land mask, zero-record
inputs, duplicate windows, a descending y axis, a checkpoint in other units and out-of-range initial states. Each
must end in one line naming the file and the field, exit 2, and no output (nor a leftover temporary).

The unmodified inputs succeed (`test_good_input_succeeds`), so each failure below is caused by its mutation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.cli.test_bad_inputs import add_units, assert_clean_failure, run_cli, write_couple_config
from tests.mpi_scripts.pairs import make_pair_file
from tests.mpi_scripts.tiny import UNITS, tiny_checkpoint

FILL = 9.969209968386869e36  # the netCDF default fill value of a float variable
VERBS = ["correct", "couple", "emulate"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The good pair file (CF units, all ocean) and tiny residual and emulator checkpoints on its grid."""
    tmp = tmp_path_factory.mktemp("faults")
    good = tmp / "pairs.nc"
    add_units(xr.load_dataset(make_pair_file(tmp / "pairs_raw.nc", n_time=6))).to_netcdf(good)
    return {"tmp": tmp, "good": good, "ck": tiny_checkpoint(tmp / "residual.pt"),
            "ck_emu": tiny_checkpoint(tmp / "emulator.pt", mode="emulator")}


@pytest.mark.parametrize("verb", VERBS)
def test_good_input_succeeds(base, tmp_path, capsys, verb):
    """The unmodified inputs run: each failure below is caused by its mutation."""
    argv, out = verb_argv(base, tmp_path, verb, base["good"])
    rc, err = run_cli(argv, capsys)
    assert rc == 0, err


def variant(base, name: str, change) -> Path:
    """The good pair file changed by `change(ds) -> ds`, written once per module under `name`."""
    path = base["tmp"] / f"fault_{name}.nc"
    if not path.exists():
        change(xr.load_dataset(base["good"])).to_netcdf(path)
    return path


def poke(var: str, value: float, t: int, y: int = 5, x: int = 5):
    """A change that sets one cell of `var` at time index `t` to `value`."""
    def change(ds):
        a = ds[var].values.copy()
        a[t, y, x] = value
        ds[var] = (ds[var].dims, a, ds[var].attrs)
        return ds
    return change


def verb_argv(base, tmp_path: Path, verb: str, pairs: Path, checkpoint: Path | None = None,
              overrides: tuple[str, ...] = ()) -> tuple[list, Path]:
    """The command line of `verb` on the pair file `pairs` (the initial state and forcing of couple/emulate), and
    the output folder it must leave empty."""
    out = tmp_path / "out"
    if verb == "correct":
        return ["correct", pairs, "--checkpoint", checkpoint or base["ck"], "-o", out / "c.nc", "--members", "2",
                *overrides], out
    ck = checkpoint or (base["ck"] if verb == "couple" else base["ck_emu"])
    cfg = write_couple_config(tmp_path / "cfg.yaml", pairs, ck, out / "r.nc", steps=2)
    return [verb, cfg, *overrides], out


def run_fails(capsys, argv, out: Path, file, field: str | None, text: str | None = None) -> str:
    """Run `argv`; assert exit 2, one line naming `file` and `field` (and `text`), nothing left in `out`."""
    rc, err = run_cli(argv, capsys)
    assert_clean_failure(rc, err, out, file, field, text)
    assert rc == 2, err
    return err


# ----------------------------------------------------------------------------------------- 1. unmasked fill value
@pytest.mark.parametrize("verb, var, t", [("correct", "forecast_sit", 2), ("correct", "initial_sit", 2),
                                          ("couple", "initial_sit", 0), ("emulate", "initial_sit", 0),
                                          ("couple", "uas_t1", 1)])
def test_unmasked_fill_value_names_the_field_and_cell(base, tmp_path, capsys, verb, var, t):
    """Was: correct ended in the bounds error "field 'sic': non-finite value(s)" (the bad value is in sit);
    couple/emulate ran with a 1e37 m thick cell."""
    bad = variant(base, f"fill_{var}_{t}", poke(var, FILL, t))
    argv, out = verb_argv(base, tmp_path, verb, bad)
    run_fails(capsys, argv, out, bad, var, f"time index {t}, cell (y=5, x=5)")


# ------------------------------------------------------------------------------------------------ 2. all-land mask
@pytest.mark.parametrize("verb", VERBS)
def test_all_land_mask_is_one_clear_message(base, tmp_path, capsys, verb):
    bad = variant(base, "all_land", lambda ds: ds.assign(mask=ds["mask"] * 0))
    argv, out = verb_argv(base, tmp_path, verb, bad)
    run_fails(capsys, argv, out, bad, "mask", "no ocean cell")


# -------------------------------------------------------------------------------------------- 3. zero-record input
@pytest.mark.parametrize("verb", VERBS)
def test_zero_record_input_is_refused(base, tmp_path, capsys, verb):
    """Was: correct wrote an empty output and exited 0."""
    bad = variant(base, "no_records", lambda ds: ds.isel(time=slice(0, 0)).drop_encoding())
    argv, out = verb_argv(base, tmp_path, verb, bad)
    run_fails(capsys, argv, out, bad, "time", "no records")


def test_zero_record_initial_file_with_separate_forcing_is_refused(base, tmp_path, capsys):
    bad = variant(base, "no_records", lambda ds: ds.isel(time=slice(0, 0)).drop_encoding())
    out = tmp_path / "out"
    cfg = write_couple_config(tmp_path / "cfg.yaml", bad, base["ck_emu"], out / "r.nc", forcing=base["good"])
    run_fails(capsys, ["emulate", cfg], out, bad, "time", "no records")


# ---------------------------------------------------------------------------------------------- 4. duplicate windows
@pytest.mark.parametrize("verb", ["couple", "emulate"])
def test_duplicate_windows_are_refused(base, tmp_path, capsys, verb):
    """Was: two windows starting at 0 wrote one file `r_w00000.nc` twice, exit 0."""
    argv, out = verb_argv(base, tmp_path, verb, base["good"], overrides=("couple.start_indices=[0,1,0]",))
    run_fails(capsys, argv, out, None, "couple.start_indices", "window start 0 is given 2 times")


# --------------------------------------------------------------------------------------------- 5. descending y axis
@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("axis", ["y", "x"])
def test_descending_axis_is_refused_with_a_hint(base, tmp_path, capsys, verb, axis):
    """Was: accepted; the output's row j was labelled y = (j + 1/2) dx although it held the file's row ny-1-j
    (and siv, on the north faces, was read as if on the south ones)."""
    bad = variant(base, f"{axis}_descending", lambda ds: ds.isel({axis: slice(None, None, -1)}))
    argv, out = verb_argv(base, tmp_path, verb, bad)
    run_fails(capsys, argv, out, bad, axis, f"reverse the file first (xarray: ds.sortby('{axis}'))")


@pytest.mark.parametrize("verb", ["couple", "emulate"])
def test_land_mask_other_than_the_checkpoints_is_one_line(base, tmp_path, capsys, verb):
    """Was: a traceback from the sampler (ValueError "this land/ocean mask (hash …) differs"); correct already
    named the file (tests/cli/test_bad_inputs.py::test_land_mask_differs_from_the_checkpoint): the same check now."""
    def coast(ds):
        mask = ds["mask"].values.copy()
        mask[:3, :3] = 0
        return ds.assign(mask=(("y", "x"), mask))
    bad = variant(base, "coast", coast)
    argv, out = verb_argv(base, tmp_path, verb, bad)
    if verb == "couple":
        argv = [*argv, f"grid.mask={bad}"]   # the physics grid has the file's land: only the checkpoint differs
    run_fails(capsys, argv, out, bad, "mask", "land mask differs from the one the checkpoint")


# ------------------------------------------------------------------- 6. one set of checks for correct/couple/emulate
@pytest.mark.parametrize("verb", VERBS)
def test_checkpoint_in_other_units_is_refused_by_every_verb(base, tmp_path, capsys, verb):
    """Was: couple refused it (handshake), correct and emulate ran it (a correction in cm added to metres)."""
    mode = "emulator" if verb == "emulate" else "residual"
    ck = tiny_checkpoint(tmp_path / f"cm_{mode}.pt", mode=mode)
    import torch

    data = torch.load(ck, weights_only=True)
    data["variables_units"] = {**UNITS, "sit": "cm"}
    torch.save(data, ck)
    argv, out = verb_argv(base, tmp_path, verb, base["good"], checkpoint=ck)
    run_fails(capsys, argv, out, ck, "sit", "'cm'")


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("var, value, text", [("initial_sic", 2.0, "outside [0, 1]"),
                                              ("initial_sit", -0.5, "below 0")])
def test_out_of_range_initial_state_is_refused_by_every_verb(base, tmp_path, capsys, verb, var, value, text):
    """Was: couple refused sic = 2 / sit < 0 (set_state), correct and emulate ran from them."""
    bad = variant(base, f"range_{var}", poke(var, value, 0))
    argv, out = verb_argv(base, tmp_path, verb, bad)
    run_fails(capsys, argv, out, bad, var, text)


def test_one_function_checks_state_values():
    """correct (pair files), couple and emulate (initial states) use the same rules: coupling.checks."""
    from coupling.checks import state_value_problem

    assert state_value_problem("initial_sic", np.array([0.0, 1.0, 0.5])) is None
    assert "outside [0, 1]" in state_value_problem("sic", np.array([0.0, 2.0]))[1]
    assert "below 0" in state_value_problem("forecast_snt", np.array([-1e-3]))[1]
    assert "fill value" in state_value_problem("tas_t0", np.array([250.0, FILL]))[2]
    assert state_value_problem("residual_sit", np.array([-3.0])) is None  # residuals may be negative
