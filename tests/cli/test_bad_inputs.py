"""Bad user input, driven through the command line (`icecorr.cli.main`, in-process): every reader of user files
(pair files of `correct`/`train`, `couple`/`emulate` initial state and forcing, `evaluate` runs and references,
`prepare` inputs, checkpoints, configs) must fail with a non-zero exit and one message naming the file and the field,
without a traceback, and leave no output file (nor a leftover temporary) in the output folder.

Each reader is first run on the unmodified inputs (it succeeds), so a failure below is caused by the mutation.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from icecorr.cli import main
from tests.mpi_scripts.pairs import make_pair_file
from tests.mpi_scripts.tiny import UNITS, tiny_checkpoint
from tests.helpers.paths import CONFIGS

VARS = ("sic", "sit", "snt", "siu", "siv")


# ---------------------------------------------------------------------------------------------------- fixtures
def add_units(ds: xr.Dataset) -> xr.Dataset:
    """CF units on every pair variable, as `icecorr generate` / `prepare` write them."""
    from coupling.checks import expected_units

    for name in ds.data_vars:
        u = expected_units(name)
        if u is not None and name not in ("mask", "run"):
            ds[name].attrs["units"] = u
    return ds


def variables_checkpoint(path: Path, variables: list[str]) -> Path:
    """A tiny residual checkpoint that predicts `variables` (e.g. with 'damage': a variable list the runs lack)."""
    from corrector.checkpoint import mask_hash, save_checkpoint
    from corrector.config import CorrectorConfig
    from corrector.model import CorrectorModel
    from corrector.normalization import Normalization

    cfg = CorrectorConfig(kind="diffusion", mode="residual", variables=variables,
                          network={"base_channels": 4, "channel_mults": [1], "attention_bottleneck": False,
                                   "embedding_dim": 8, "norm_groups": 1}, sampler={"name": "dpmpp_2m", "steps": 2})
    torch.manual_seed(0)
    model = CorrectorModel(cfg, len(cfg.conditioning))
    norm = Normalization.identity(cfg.conditioning, cfg.variables)
    return save_checkpoint(path, model_state=model.state_dict(), ema_state=None, config=cfg, normalization=norm,
                           grid={"ny": 16, "nx": 16, "dx": 16_000.0, "mask_hash": mask_hash(np.ones((16, 16)))},
                           variables_units={**UNITS, "damage": "1"})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reliability")
    pairs = make_pair_file(tmp / "pairs_raw.nc", n_time=6)
    good = tmp / "pairs.nc"
    add_units(xr.load_dataset(pairs)).to_netcdf(good)
    out = {"tmp": tmp, "good": good,
           "ck": tiny_checkpoint(tmp / "residual.pt"),
           "ck_emu": tiny_checkpoint(tmp / "emulator.pt", mode="emulator"),
           "ck_32": tiny_checkpoint(tmp / "residual_32.pt", ny=32, nx=32),
           "ck_damage": variables_checkpoint(tmp / "residual_damage.pt", [*VARS, "damage"])}
    # a run file for `evaluate` (an emulator run from the pair file, complete records)
    run_dir = tmp / "run"
    cfg = write_couple_config(tmp / "mkrun.yaml", good, out["ck_emu"], run_dir / "run.nc", steps=3)
    assert main(["emulate", str(cfg)]) == 0
    out["run"] = run_dir / "run.nc"
    return out


def write_couple_config(path: Path, initial: Path, checkpoint: Path | None, output: Path, steps: int = 2,
                        forcing: Path | None = None, grid: int = 16) -> Path:
    lines = [f"grid: {{nx: {grid}, ny: {grid}, dx: 16000.0}}", f"initial: {initial}"]
    if forcing is not None:
        lines.append(f"forcing: {forcing}")
    ck = f", checkpoint: {checkpoint}" if checkpoint is not None else ""
    lines.append(f"couple: {{members: 2, n_steps: {steps}, output: {output}{ck}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------------------------------- mutations
def _poke(var: str, value: float, t: int = 2):
    def f(ds):
        a = ds[var].values.copy()
        a[t, 5, 5] = value
        ds[var] = (ds[var].dims, a, ds[var].attrs)
        return ds
    return f


def _retime(hours: list[float]):
    def f(ds):
        return ds.assign_coords(time=ds["time"].values[0] + (np.asarray(hours) * 3600).astype("timedelta64[s]"))
    return f


MUTATIONS = {
    "drop_forecast_sit": lambda ds: ds.drop_vars("forecast_sit"),
    "drop_initial_snt": lambda ds: ds.drop_vars("initial_snt"),
    "drop_uas_t1": lambda ds: ds.drop_vars("uas_t1"),
    "rename_dim_y": lambda ds: ds.rename_dims({"y": "lat"}),
    "transpose_forecast_sic": lambda ds: ds.assign(forecast_sic=ds["forecast_sic"].transpose("time", "x", "y")),
    "transpose_initial_sic": lambda ds: ds.assign(initial_sic=ds["initial_sic"].transpose("time", "x", "y")),
    "transpose_uas_t0": lambda ds: ds.assign(uas_t0=ds["uas_t0"].transpose("x", "y", "time")),
    "shape_16x12": lambda ds: ds.isel(x=slice(0, 12)),
    "units_forecast_sit_cm": lambda ds: ds.assign(forecast_sit=ds["forecast_sit"].assign_attrs(units="cm")),
    "units_initial_sic_pct": lambda ds: ds.assign(initial_sic=ds["initial_sic"].assign_attrs(units="%")),
    "units_tas_degC": lambda ds: ds.assign(tas_t0=ds["tas_t0"].assign_attrs(units="degC")),
    "nan_tas_t0": _poke("tas_t0", np.nan),
    "inf_uas_t1": _poke("uas_t1", np.inf),
    "nan_forecast_sit": _poke("forecast_sit", np.nan),
    "nan_initial_sic_t0": _poke("initial_sic", np.nan, t=0),
    "inf_initial_sit_t3": _poke("initial_sit", -np.inf, t=3),
    "time_6h": _retime([0, 6, 12, 18, 24, 30]),
    "time_gap": _retime([0, 12, 24, 60, 72, 84]),
}


def mutated(base, name: str) -> Path:
    path = base["tmp"] / f"bad_{name}.nc"
    if not path.exists():
        if name == "truncated":
            data = base["good"].read_bytes()
            path.write_bytes(data[: len(data) // 2])
        elif name == "flipped":
            data = bytearray(base["good"].read_bytes())
            for i in range(0, len(data), 389):
                data[i] ^= 0x5A
            path.write_bytes(bytes(data))
        elif name == "empty":
            path.write_bytes(b"")
        else:
            ds = MUTATIONS[name](xr.load_dataset(base["good"]))
            ds.to_netcdf(path)
    return path


def run_cli(argv, capsys, with_stdout: bool = False):
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    captured = capsys.readouterr()
    return (rc, captured.err, captured.out) if with_stdout else (rc, captured.err)


def assert_clean_failure(rc, err: str, out_dir: Path, file, field: str | None, text: str | None = None) -> None:
    assert rc not in (0, None), err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    log = os.environ.get("ICECORR_BAD_INPUT_LOG")  # the list of bad inputs and messages, for the reliability note
    if log:
        with open(log, "a") as fh:
            fh.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]}\trc={rc}\t{lines[0]}\n")
    if file is not None:
        assert str(file) in lines[0], err
    if field is not None:
        assert f"'{field}'" in lines[0], err
    if text is not None:
        assert text in lines[0], err
    left = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
    assert left == [], f"output folder not empty after a failure: {left}"


# ---------------------------------------------------------------------------------------------- icecorr correct
CORRECT_CASES = {  # mutation -> field named in the message
    "drop_forecast_sit": "forecast_sit", "drop_initial_snt": "initial_snt", "drop_uas_t1": "uas_t1",
    "rename_dim_y": "forecast_sic", "transpose_forecast_sic": "forecast_sic", "transpose_uas_t0": "uas_t0",
    "shape_16x12": "forecast_sic", "units_forecast_sit_cm": "forecast_sit", "units_initial_sic_pct": "initial_sic",
    "units_tas_degC": "tas_t0", "nan_tas_t0": "tas_t0", "inf_uas_t1": "uas_t1", "nan_forecast_sit": "forecast_sit",
    "inf_initial_sit_t3": "initial_sit", "time_6h": "time", "time_gap": "time", "truncated": None,
    "flipped": None, "empty": None,
}


def test_correct_good_input_succeeds(base, tmp_path, capsys):
    rc, err = run_cli(["correct", base["good"], "--checkpoint", base["ck"], "-o", tmp_path / "c.nc",
                       "--members", "2"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.nc"]


@pytest.mark.parametrize("case", sorted(CORRECT_CASES))
def test_correct_rejects_bad_pair_file(base, tmp_path, capsys, case):
    bad = mutated(base, case)
    out = tmp_path / "out"
    rc, err = run_cli(["correct", bad, "--checkpoint", base["ck"], "-o", out / "c.nc", "--members", "2"], capsys)
    assert_clean_failure(rc, err, out, bad, CORRECT_CASES[case])


# ---------------------------------------------------------------------------------------- couple and emulate
ENSEMBLE_CASES = {  # mutations of the `initial` pair file (also the forcing): field named
    "drop_initial_snt": "initial_snt", "drop_uas_t1": "uas_t1", "rename_dim_y": "uas_t0",
    "transpose_initial_sic": "initial_sic", "transpose_uas_t0": "uas_t0", "shape_16x12": "uas_t0",
    "units_initial_sic_pct": "initial_sic", "units_tas_degC": "tas_t0", "nan_tas_t0": "tas_t0",
    "inf_uas_t1": "uas_t1", "nan_initial_sic_t0": "initial_sic", "time_6h": "time", "time_gap": "time",
    "truncated": None, "flipped": None, "empty": None,
}


@pytest.mark.parametrize("verb", ["couple", "emulate"])
def test_ensemble_good_input_succeeds(base, tmp_path, capsys, verb):
    ck = base["ck"] if verb == "couple" else base["ck_emu"]
    cfg = write_couple_config(tmp_path / "cfg.yaml", base["good"], ck, tmp_path / "out" / "r.nc")
    rc, err = run_cli([verb, cfg], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.nc"]


@pytest.mark.parametrize("verb", ["couple", "emulate"])
@pytest.mark.parametrize("case", sorted(ENSEMBLE_CASES))
def test_ensemble_rejects_bad_initial_and_forcing(base, tmp_path, capsys, verb, case):
    bad = mutated(base, case)
    ck = base["ck"] if verb == "couple" else base["ck_emu"]
    out = tmp_path / "out"
    cfg = write_couple_config(tmp_path / "cfg.yaml", bad, ck, out / "r.nc", steps=4)
    rc, err = run_cli([verb, cfg], capsys)
    assert_clean_failure(rc, err, out, bad, ENSEMBLE_CASES[case])


@pytest.mark.parametrize("verb", ["couple", "emulate"])
def test_ensemble_rejects_bad_separate_forcing_file(base, tmp_path, capsys, verb):
    """A good initial state with a separate forcing file holding NaN: the forcing file is named."""
    bad = mutated(base, "nan_tas_t0")
    ck = base["ck"] if verb == "couple" else base["ck_emu"]
    out = tmp_path / "out"
    cfg = write_couple_config(tmp_path / "cfg.yaml", base["good"], ck, out / "r.nc", steps=4, forcing=bad)
    rc, err = run_cli([verb, cfg], capsys)
    assert_clean_failure(rc, err, out, bad, "tas_t0", "NaN/inf at time index 2")


def test_couple_grid_of_config_differs_from_files(base, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = write_couple_config(tmp_path / "cfg.yaml", base["good"], None, out / "r.nc", grid=32)
    rc, err = run_cli(["couple", cfg], capsys)
    assert_clean_failure(rc, err, out, base["good"], "uas_t0", "does not match the model grid (ny, nx) = (32, 32)")


# ------------------------------------------------------------------------------------------------ checkpoints
def bad_checkpoint(base, kind: str) -> Path:
    path = base["tmp"] / f"ck_{kind}.pt"
    if path.exists():
        return path
    data = base["ck"].read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "flipped":
        # one flipped bit inside the largest stored tensor (not in the archive's alignment padding)
        import struct
        import zipfile

        with zipfile.ZipFile(base["ck"]) as zf:
            info = max(zf.infolist(), key=lambda i: i.file_size)
        b = bytearray(data)
        name_len, extra_len = struct.unpack("<HH", b[info.header_offset + 26:info.header_offset + 30])
        start = info.header_offset + 30 + name_len + extra_len
        b[start + info.file_size // 2] ^= 0x01
        path.write_bytes(bytes(b))
    elif kind == "text":
        path.write_text("corrector: {kind: diffusion}\n")
    elif kind == "pickled":
        # a checkpoint that would run code on a plain torch.load: rejected by weights-only loading
        torch.save({"format": "icecorr-corrector", "evil": Path("/")}, path)
    elif kind == "missing":
        pass
    return path


CHECKPOINT_CASES = {"truncated": "truncated", "flipped": "CRC check failed", "text": "not a torch checkpoint",
                    "pickled": "refusing to load", "missing": "no such file"}


@pytest.mark.parametrize("verb", ["correct", "couple", "emulate", "checkpoint"])
@pytest.mark.parametrize("kind", sorted(CHECKPOINT_CASES))
def test_unreadable_checkpoint(base, tmp_path, capsys, verb, kind):
    ck = bad_checkpoint(base, kind)
    out = tmp_path / "out"
    if verb == "correct":
        argv = ["correct", base["good"], "--checkpoint", ck, "-o", out / "c.nc"]
    elif verb == "checkpoint":
        argv = ["checkpoint", "inspect", ck]
    else:
        argv = [verb, write_couple_config(tmp_path / "cfg.yaml", base["good"], ck, out / "r.nc")]
    rc, err = run_cli(argv, capsys)
    assert_clean_failure(rc, err, out, ck, None, CHECKPOINT_CASES[kind])


def test_checkpoint_inspect_describes_a_good_checkpoint(base, capsys):
    rc, err, out = run_cli(["checkpoint", "inspect", base["ck"]], capsys, with_stdout=True)
    assert rc == 0, err
    assert "mode: residual" in out and "grid: ny=16 nx=16" in out


@pytest.mark.parametrize("verb", ["correct", "couple", "emulate"])
def test_checkpoint_grid_differs_from_the_files(base, tmp_path, capsys, verb):
    out = tmp_path / "out"
    if verb == "correct":
        argv = ["correct", base["good"], "--checkpoint", base["ck_32"], "-o", out / "c.nc"]
        named, field = base["good"], "forecast_sic"
    elif verb == "couple":
        argv = [verb, write_couple_config(tmp_path / "cfg.yaml", base["good"], base["ck_32"], out / "r.nc")]
        named, field = base["ck_32"], "grid"
    else:
        ck = tiny_checkpoint(tmp_path / "emu32.pt", ny=32, nx=32, mode="emulator")
        argv = [verb, write_couple_config(tmp_path / "cfg.yaml", base["good"], ck, out / "r.nc")]
        named, field = base["good"], "uas_t0"
    rc, err = run_cli(argv, capsys)
    assert_clean_failure(rc, err, out, named, field, "(32, 32)")


@pytest.mark.parametrize("verb", ["correct", "couple"])
def test_checkpoint_variables_differ_from_the_run(base, tmp_path, capsys, verb):
    """A checkpoint that also predicts 'damage': the pair file (correct) or the coarse model (couple) lacks it."""
    out = tmp_path / "out"
    if verb == "correct":
        argv = ["correct", base["good"], "--checkpoint", base["ck_damage"], "-o", out / "c.nc"]
        named, field = base["good"], "forecast_damage"
    else:
        argv = [verb, write_couple_config(tmp_path / "cfg.yaml", base["good"], base["ck_damage"], out / "r.nc")]
        named, field = base["ck_damage"], "variables"
    rc, err = run_cli(argv, capsys)
    assert_clean_failure(rc, err, out, named, field)


def test_land_mask_differs_from_the_checkpoint(base, tmp_path, capsys):
    ds = xr.load_dataset(base["good"])
    mask = ds["mask"].values.copy()
    mask[:3, :3] = 0
    ds["mask"] = (("y", "x"), mask)
    bad = tmp_path / "land.nc"
    ds.to_netcdf(bad)
    out = tmp_path / "out"
    rc, err = run_cli(["correct", bad, "--checkpoint", base["ck"], "-o", out / "c.nc"], capsys)
    assert_clean_failure(rc, err, out, bad, "mask", "land mask differs")


# -------------------------------------------------------------------------------------------------- icecorr train
TRAIN_CASES = {"drop_forecast_sit": "forecast_sit", "rename_dim_y": "y", "transpose_uas_t0": "uas_t0",
               "units_forecast_sit_cm": "forecast_sit", "nan_tas_t0": "tas_t0", "inf_initial_sit_t3": "initial_sit",
               "time_6h": "time", "time_gap": "time", "truncated": None, "flipped": None}


def train_argv(train_file, val_file, out_dir):
    """`icecorr train` on a tiny config; one file as both splits says so (refused otherwise, issue 21)."""
    same = ["train.data.allow_val_is_train=true"] if train_file == val_file else []
    return ["train", CONFIGS / "train_tiny.yaml",
            f"train.data.train_file={train_file}", f"train.data.val_file={val_file}", "train.batch_size=2",
            "train.max_steps=1", "train.val_every=1", "train.skill_batches=0", f"train.out_dir={out_dir}", *same,
            "--no-progress"]


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_rejects_bad_pair_file(base, tmp_path, capsys, case):
    bad = mutated(base, case)
    out = tmp_path / "out"
    rc, err = run_cli(train_argv(bad, base["good"], out), capsys)
    assert_clean_failure(rc, err, out, bad, TRAIN_CASES[case])


@pytest.mark.parametrize("case, field", [("units_initial_sic_pct", "initial_sic"), ("shape_16x12", "grid")])
def test_train_rejects_bad_val_file(base, tmp_path, capsys, case, field):
    """A validation file with other units or another grid than the train file (was: trained and validated on it)."""
    bad = mutated(base, case)
    out = tmp_path / "out"
    rc, err = run_cli(train_argv(base["good"], bad, out), capsys)
    assert_clean_failure(rc, err, out, bad, field)


# ----------------------------------------------------------------------------------------------- icecorr evaluate
EVAL_REFERENCE_CASES = {"drop_initial_snt": "initial_snt", "rename_dim_y": "initial_sic",
                        "transpose_initial_sic": "initial_sic", "truncated": None, "flipped": None, "empty": None}


def run_mutation(base, name: str, fn) -> Path:
    path = base["tmp"] / f"run_{name}.nc"
    if not path.exists():
        fn(xr.load_dataset(base["run"])).to_netcdf(path)
    return path


EVAL_RUN_CASES = {
    "drop_sit": (lambda ds: ds.drop_vars("sit"), "sit"),
    "transpose_sic": (lambda ds: ds.assign(sic=ds["sic"].transpose("time", "member", "x", "y")), "sic"),
    "units_sit_cm": (lambda ds: ds.assign(sit=ds["sit"].assign_attrs(units="cm")), "sit"),
    "nan_sic": (lambda ds: ds.assign(sic=ds["sic"].where(ds["sic"] < 0.95)), "sic"),
    "inf_siu": (lambda ds: ds.assign(siu=ds["siu"].where((ds["time"] != ds["time"][1]) | (ds["x"] != ds["x"][5]),
                                                         np.inf)), "siu"),
}


@pytest.mark.parametrize("case", sorted(EVAL_REFERENCE_CASES))
def test_evaluate_rejects_bad_reference(base, tmp_path, capsys, case):
    bad = mutated(base, case)
    out = tmp_path / "report"
    rc, err = run_cli(["evaluate", f"x={base['run']}", "--reference", bad, "-o", out], capsys)
    assert_clean_failure(rc, err, out, bad, EVAL_REFERENCE_CASES[case])


@pytest.mark.parametrize("case", sorted(EVAL_RUN_CASES))
def test_evaluate_rejects_bad_run(base, tmp_path, capsys, case):
    fn, field = EVAL_RUN_CASES[case]
    bad = run_mutation(base, case, fn)
    out = tmp_path / "report"
    rc, err = run_cli(["evaluate", f"x={bad}", "--reference", base["good"], "-o", out], capsys)
    assert_clean_failure(rc, err, out, bad, field)


# ------------------------------------------------------------------------------------------------ icecorr prepare
@pytest.fixture(scope="module")
def nextsim(tmp_path_factory):
    from tests.training.data.test_prepare import write_nextsim_files

    folder = tmp_path_factory.mktemp("nextsim_cli")
    state, forcing = write_nextsim_files(folder, n_files=1)
    return state[0], forcing


def prepare_argv(state, forcing, out):
    from tests.training.data.test_prepare import DX, EXAMPLE, N

    return ["prepare", EXAMPLE, f"grid.nx={N}", f"grid.ny={N}", f"grid.dx={DX}",
            f"prepare.state_files={json.dumps([str(state)])}", f"prepare.forcing_files={json.dumps([str(forcing)])}",
            'prepare.splits={"train": ["2018-01-01T00:00", "2018-01-03T00:00"]}', "--out", out]


def _nextsim_mutation(src: Path, dst: Path, fn) -> Path:
    ds = fn(xr.load_dataset(src))
    ds.to_netcdf(dst, encoding={v: {"_FillValue": -9999.0} for v in ds.data_vars if ds[v].dtype.kind == "f"})
    return dst


@pytest.mark.parametrize("case", ["truncated_state", "inf_forcing", "transposed_state", "time_7h_state",
                                  "units_forcing"])
def test_prepare_rejects_bad_input(nextsim, tmp_path, capsys, case):
    state, forcing = nextsim
    if case == "truncated_state":
        bad = tmp_path / "state.nc"
        bad.write_bytes(state.read_bytes()[:3000])
        argv, field = prepare_argv(bad, forcing, tmp_path / "out"), None
    elif case == "inf_forcing":
        bad = _nextsim_mutation(forcing, tmp_path / "forcing.nc", lambda ds: ds.assign(
            u10=ds["u10"].where(ds["u10"] < 9.0, np.inf)))
        argv, field = prepare_argv(state, bad, tmp_path / "out"), "u10"  # the file's name of uas
    elif case == "transposed_state":
        bad = _nextsim_mutation(state, tmp_path / "state.nc", lambda ds: ds.assign(
            sit=ds["sit"].transpose("time", "x", "y")))
        argv, field = prepare_argv(bad, forcing, tmp_path / "out"), "sit"
    elif case == "time_7h_state":   # a step that does not divide 12 h (6-hourly files are resampled)
        bad = _nextsim_mutation(state, tmp_path / "state.nc", lambda ds: ds.assign_coords(
            time=ds["time"].values[0] + np.arange(ds.sizes["time"]) * np.timedelta64(7, "h")))
        argv, field = prepare_argv(bad, forcing, tmp_path / "out"), "time"
    else:
        bad = _nextsim_mutation(forcing, tmp_path / "forcing.nc", lambda ds: ds.assign(
            t2m=ds["t2m"].assign_attrs(units="K")))
        argv, field = prepare_argv(state, bad, tmp_path / "out"), "t2m"
    rc, err = run_cli(argv, capsys)
    assert_clean_failure(rc, err, tmp_path / "out", bad, field)


# ------------------------------------------------------------------------------------------ configs and restarts
def test_yaml_config_cannot_execute_code(base, tmp_path, capsys):
    marker = tmp_path / "pwned"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"grid: {{nx: 16, ny: 16, dx: 16000.0}}\ninitial: !!python/object/apply:os.system "
                   f"['touch {marker}']\ncouple: {{members: 1, n_steps: 1, output: {tmp_path / 'out' / 'r.nc'}}}\n")
    rc, err = run_cli(["couple", cfg], capsys)
    assert_clean_failure(rc, err, tmp_path / "out", cfg, None, "not valid YAML")
    assert not marker.exists()
    # the same tag in a command-line override
    good = write_couple_config(tmp_path / "good.yaml", base["good"], None, tmp_path / "out" / "r.nc")
    rc, err = run_cli(["couple", good, f"initial=!!python/object/apply:os.system ['touch {marker}']"], capsys)
    assert_clean_failure(rc, err, tmp_path / "out", None, None, "not valid YAML")
    assert not marker.exists()


def test_config_in_a_checkpoint_cannot_execute_code(base, tmp_path, capsys):
    """A checkpoint whose stored config YAML carries a python tag is refused (safe_load), not executed."""
    marker = tmp_path / "pwned"
    raw = torch.load(base["ck"], weights_only=True)
    raw["config_yaml"] = f"!!python/object/apply:os.system ['touch {marker}']\n"
    bad = tmp_path / "evil.pt"
    torch.save(raw, bad)
    out = tmp_path / "out"
    rc, err = run_cli(["correct", base["good"], "--checkpoint", bad, "-o", out / "c.nc"], capsys)
    assert_clean_failure(rc, err, out, bad, None, "stored config is invalid")
    assert not marker.exists()


@pytest.mark.parametrize("verb", ["couple", "emulate"])
def test_unreadable_restart_file(base, tmp_path, capsys, verb):
    bad = tmp_path / "r.restart.step00001.nc"
    bad.write_bytes(base["good"].read_bytes()[:2000])
    ck = base["ck"] if verb == "couple" else base["ck_emu"]
    out = tmp_path / "out"
    cfg = write_couple_config(tmp_path / "cfg.yaml", base["good"], ck, out / "r.nc")
    rc, err = run_cli([verb, cfg, "--restart", bad], capsys)
    assert_clean_failure(rc, err, out, bad, None, "not a readable NetCDF restart file")


# ------------------------------------------------------------------------------- snapshot forcing files (couple)
def snapshot_forcing(base, name: str, fn=None) -> Path:
    """A forcing file of 12-hourly snapshots `{f}(time, y, x)` (the pair file's {f}_t0 plus the last {f}_t1)."""
    from icecorr.base.variables import FORCING_VARIABLES

    path = base["tmp"] / f"forcing_{name}.nc"
    with xr.open_dataset(base["good"]) as ds:
        times = np.append(ds["time"].values, ds["time"].values[-1] + np.timedelta64(12, "h"))
        f = xr.Dataset({v: (("time", "y", "x"), np.concatenate([ds[f"{v}_t0"].values, ds[f"{v}_t1"].values[-1:]]),
                            {"units": ds[f"{v}_t0"].attrs["units"]}) for v in FORCING_VARIABLES},
                       coords={"time": times})
    (fn or (lambda d: d))(f).to_netcdf(path)
    return path


SNAPSHOT_CASES = {
    "good": (None, None),
    "time_6h": (lambda d: d.assign_coords(time=d["time"].values[0] + np.arange(d.sizes["time"])
                                          * np.timedelta64(6, "h")), "time"),
    "missing_huss": (lambda d: d.drop_vars("huss"), "huss"),
    "units_tas_degC": (lambda d: d.assign(tas=d["tas"].assign_attrs(units="degC")), "tas"),
    "inf_vo": (lambda d: d.assign(vo=d["vo"].where(d["time"] != d["time"][3], np.inf)), "vo"),
}


@pytest.mark.parametrize("case", sorted(SNAPSHOT_CASES))
def test_couple_with_a_snapshot_forcing_file(base, tmp_path, capsys, case):
    fn, field = SNAPSHOT_CASES[case]
    forcing = snapshot_forcing(base, case, fn)
    out = tmp_path / "out"
    cfg = write_couple_config(tmp_path / "cfg.yaml", base["good"], None, out / "r.nc", steps=4, forcing=forcing)
    rc, err = run_cli(["couple", cfg], capsys)
    if case == "good":
        assert rc == 0, err
        assert sorted(p.name for p in out.iterdir()) == ["r.nc"]
    else:
        assert_clean_failure(rc, err, out, forcing, field)
