"""Nothing lost (issue 21), driven through the command line: no verb writes over one of its inputs, an existing
output, a device or a folder; an interrupted or failed run leaves the old output untouched; two runs never write one
output or training folder at once; `correct` needs a corrector; a restart keeps its corrector; a diverged
checkpoint is invalid; a closed stdout pipe or a full disk ends in one clear line, not lost work or a crash.

Each refusal is one line naming the file, exit status != 0, and nothing left behind (inputs byte-identical).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from tests.cli import test_bad_inputs
from tests.cli.test_bad_inputs import assert_clean_failure, run_cli, train_argv, write_couple_config
from tests.helpers.paths import REPO
from tests.mpi_scripts.tiny import tiny_checkpoint


base = test_bad_inputs.base  # fixture: a pair file, tiny checkpoints (residual, emulator) and an emulator run


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def correct_argv(base, out, *extra):
    return ["correct", base["good"], "--checkpoint", base["ck"], "-o", out, "--members", "2", *extra]


def ensemble_argv(base, tmp_path, verb: str, output: Path, *extra, name: str = "run.yaml", **cfg):
    ck = base["ck_emu"] if verb == "emulate" else None
    config = write_couple_config(tmp_path / name, base["good"], cfg.pop("checkpoint", ck), output, **cfg)
    return [verb, config, *extra], config


def verb_argv(base, tmp_path, verb: str, out) -> list:
    """`correct`, `couple` or `emulate` onto `out` (a config, if any, in tmp_path/cfg)."""
    if verb == "correct":
        return correct_argv(base, out)
    (tmp_path / "cfg").mkdir(exist_ok=True)
    return ensemble_argv(base, tmp_path / "cfg", verb, out)[0]


# ------------------------------------------------------------------------------------------- inputs as outputs
@pytest.mark.parametrize("which", ["pair file", "checkpoint"])
def test_correct_never_writes_over_its_inputs(base, tmp_path, capsys, which):
    """Was: exit 0, "wrote …", the pair file (or the checkpoint) replaced by the corrected ensemble."""
    target = base["good"] if which == "pair file" else base["ck"]
    before = snapshot(base["good"], base["ck"])
    rc, err = run_cli(correct_argv(base, target, "--overwrite"), capsys)
    assert_clean_failure(rc, err, tmp_path, target, None, f"the output is the run's "
                         f"{'forecast file' if which == 'pair file' else 'checkpoint'}")
    assert snapshot(base["good"], base["ck"]) == before


@pytest.mark.parametrize("verb", ["couple", "emulate"])
def test_couple_and_emulate_never_write_over_the_initial_file(base, tmp_path, capsys, verb):
    before = snapshot(base["good"])
    argv, _ = ensemble_argv(base, tmp_path, verb, base["good"])
    rc, err = run_cli([*argv, "--overwrite"], capsys)
    assert_clean_failure(rc, err, tmp_path / "none", base["good"], None, "the output is the run's initial file")
    assert snapshot(base["good"]) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


def test_emulate_never_writes_over_its_config(base, tmp_path, capsys):
    argv, config = ensemble_argv(base, tmp_path, "emulate", tmp_path / "run.yaml")
    text = config.read_text()
    rc, err = run_cli([*argv, "--overwrite"], capsys)
    assert_clean_failure(rc, err, tmp_path / "none", config, None, "the output is the run's config")
    assert config.read_text() == text


# --------------------------------------------------------------------------------------------- existing outputs
@pytest.mark.parametrize("verb", ["correct", "couple", "emulate"])
def test_existing_output_is_replaced_only_with_overwrite(base, tmp_path, capsys, verb):
    """Was: a rerun replaced the complete output without asking (and destroyed it at start-up)."""
    out = tmp_path / "out" / "o.nc"
    argv = verb_argv(base, tmp_path, verb, out)
    rc, err = run_cli(argv, capsys)
    assert rc == 0, err
    before = snapshot(out)
    rc, err = run_cli(argv, capsys)
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"file {out}: the output exists; pass --overwrite to replace it" in err
    assert snapshot(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["o.nc"]
    rc, err = run_cli([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert xr.open_dataset(out).attrs["status"] == "complete"
    assert sorted(p.name for p in out.parent.iterdir()) == ["o.nc"]


def test_interrupted_rerun_leaves_the_complete_output_untouched(base, tmp_path, capsys, monkeypatch):
    """Ctrl-C during a rerun onto a complete output: was a 0-record file; now the old file is unchanged."""
    import coupling.correct as correct_verb

    out = tmp_path / "c.nc"
    assert run_cli(correct_argv(base, out), capsys)[0] == 0
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(correct_verb, "_correct_chunk", interrupted)
    rc, err = run_cli(correct_argv(base, out, "--overwrite"), capsys)
    assert rc == 130, err
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.nc"]


# ------------------------------------------------------------------------------------------------ bad out paths
def _bad_output(tmp_path: Path, kind: str) -> tuple[str, str]:
    if kind == "folder":
        (tmp_path / "o.nc").mkdir()
        return str(tmp_path / "o.nc"), "exists and is a folder"
    if kind == "fifo":
        os.mkfifo(tmp_path / "o.nc")
        return str(tmp_path / "o.nc"), "exists and is a named pipe"
    if kind == "loop":
        (tmp_path / "o.nc").symlink_to(tmp_path / "o2.nc")
        (tmp_path / "o2.nc").symlink_to(tmp_path / "o.nc")
        return str(tmp_path / "o.nc"), "is a symbolic link loop"
    if kind == "empty":
        return "", "the output path is empty"
    if kind == "long":
        return str(tmp_path / ("x" * 297 + ".nc")), "the output name is 300 bytes"
    (tmp_path / "notes.txt").write_text("x")
    return str(tmp_path / "notes.txt" / "o.nc"), "notes.txt is a file, not a folder"


@pytest.mark.parametrize("verb, kind", [(v, k) for v in ("correct", "emulate") for k in
                                        ("folder", "fifo", "loop", "empty", "long", "parent_file")
                                        if (v, k) != ("emulate", "empty")])  # an empty couple.output: ConfigError
def test_unusable_output_path_is_one_clear_line(base, tmp_path, capsys, kind, verb):
    """Was: tracebacks (IsADirectoryError, [Errno 36]), a `<dir>.tmp-PID` left after every try, or a named pipe
    replaced by a file."""
    out, text = _bad_output(tmp_path, kind)
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = verb_argv(base, tmp_path, verb, out)
    rc, err = run_cli([*argv, "--overwrite"], capsys)
    assert_clean_failure(rc, err, tmp_path / "none", out or None, None, text)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cfg") == before


@pytest.mark.parametrize("verb", ["evaluate", "cyclone", "generate"])
def test_output_folder_that_is_a_file_is_one_clear_line(base, tmp_path, capsys, verb):
    """Was: a traceback (FileExistsError / NotADirectoryError) once the work was done, or the file replaced."""
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    argv = {"evaluate": ["evaluate", base["run"], "--reference", base["good"], "-o", notes],
            "cyclone": ["cyclone", "--out", notes], "generate": ["generate", "--out", notes]}[verb]
    rc, err = run_cli(argv, capsys)
    assert_clean_failure(rc, err, tmp_path / "none", notes, None, "the output folder exists and is not a folder")
    assert notes.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_read_only_output_folder_is_one_clear_line(base, tmp_path, capsys, monkeypatch):
    """Was: a traceback ending in [Errno 30] Read-only file system (here: access() says no, as on a read-only mount;
    root ignores permission bits)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(ro) else real(p, mode, **kw))
    rc, err = run_cli(correct_argv(base, ro / "c.nc"), capsys)
    assert_clean_failure(rc, err, ro, ro / "c.nc", None, f"folder {ro} is not writable")


# ------------------------------------------------------------------------------------------------------- locks
def hold_lock(path: Path) -> subprocess.Popen:
    """Another run holding the lock of `path` (as `icecorr` takes it: flock on `<name>.lock`)."""
    code = ("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, b'pid %d on test: icecorr first run' % os.getpid())\n"
            "print('locked', flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path.with_name(path.name + ".lock"))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("verb", ["correct", "couple"])
def test_second_concurrent_run_onto_one_output_fails_at_once(base, tmp_path, capsys, verb):
    """Was: both runs reported success; one run's data was gone."""
    out = tmp_path / "o.nc"
    argv = verb_argv(base, tmp_path, verb, out)
    holder = hold_lock(out)
    try:
        rc, err = run_cli(argv, capsys)
    finally:
        holder.kill()
        holder.wait()
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{out}.lock: another run is writing o.nc (locked by pid {holder.pid} on test: icecorr first run)" in err
    assert not out.exists()


def test_training_folder_is_locked(base, tmp_path, capsys):
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        rc, err = run_cli(train_argv(base["good"], base["good"], out), capsys)
    finally:
        holder.kill()
        holder.wait()
    assert_clean_failure(rc, err, out, f"{out}.lock", None, "another run is writing run (locked by pid")


# ------------------------------------------------------------------------------------------- training folders
def test_training_folder_holding_another_run_is_refused(base, tmp_path, capsys):
    """Was: two runs into one out_dir both succeeded, best.pt from one seed, last.pt and config from the other."""
    out = tmp_path / "run"
    rc, err = run_cli(train_argv(base["good"], base["good"], out), capsys)
    assert rc == 0, err
    before = snapshot(*sorted(out.iterdir()))
    rc, err = run_cli([*train_argv(base["good"], base["good"], out), "--seed", "7"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"file {out}: the run folder already holds a training run (best.pt, last.pt, resume.pt, metrics.csv, " \
           f"config.yaml); its config differs at train.seed (0 there, 7 now)" in err
    assert snapshot(*sorted(out.iterdir())) == before
    # a resume of the same config is allowed (here a longer run: max_steps is part of the config, so --overwrite)
    rc, err = run_cli([*train_argv(base["good"], base["good"], out), "--seed", "7", "--overwrite"], capsys)
    assert rc == 0, err
    import yaml

    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == 7
    assert not (tmp_path / "run.lock").exists()


def test_training_resume_of_the_same_config_is_allowed(base, tmp_path, capsys):
    out = tmp_path / "run"
    argv = train_argv(base["good"], base["good"], out)
    assert run_cli(argv, capsys)[0] == 0
    rc, err = run_cli([*argv[:-1], "train.progress=false", argv[-1]], capsys)  # a run-time key may differ
    assert rc == 0, err
    # a folder written before a config field existed (its config.yaml lacks it) is the same config
    import yaml

    stored = yaml.safe_load((out / "config.yaml").read_text())
    del stored["corrector"]["loss_window_floor"]
    (out / "config.yaml").write_text(yaml.safe_dump(stored))
    rc, err = run_cli(argv, capsys)
    assert rc == 0, err


# ---------------------------------------------------------------------------------------- silent wrong results
def test_correct_without_checkpoint_needs_no_correction(base, tmp_path, capsys):
    """Was: exit 0 and a zero-spread uncorrected "ensemble"."""
    out = tmp_path / "c.nc"
    rc, err = run_cli(["correct", base["good"], "-o", out, "--members", "2"], capsys)
    assert_clean_failure(rc, err, tmp_path, None, "correct.checkpoint", "no corrector checkpoint: pass --checkpoint")
    rc, err = run_cli(["correct", base["good"], "-o", out, "--members", "2", "--no-correction"], capsys)
    assert rc == 0, err
    ds, pairs = xr.load_dataset(out), xr.load_dataset(base["good"])
    np.testing.assert_array_equal(ds["sit"].values[:, 0], pairs["forecast_sit"].values.astype(np.float32))  # float32 on disk
    rc, err = run_cli([*correct_argv(base, tmp_path / "d.nc"), "--no-correction"], capsys)
    assert rc == 2 and "--no-correction contradicts the checkpoint" in err


def test_restart_with_another_checkpoint_is_refused(base, tmp_path, capsys):
    """Was: one output continued by two correctors."""
    argv, _ = ensemble_argv(base, tmp_path, "emulate", tmp_path / "e.nc", steps=3)
    config = tmp_path / "run.yaml"
    config.write_text(config.read_text().replace("n_steps: 3", "n_steps: 3, restart_interval: 1"))
    assert run_cli(argv, capsys)[0] == 0
    restart = tmp_path / "e.restart.step00001.nc"
    other = tiny_checkpoint(tmp_path / "other.pt", mode="emulator", steps=3)
    cont = write_couple_config(tmp_path / "cont.yaml", base["good"], other, tmp_path / "cont" / "e.nc", steps=3)
    rc, err = run_cli(["emulate", cont, "--restart", restart], capsys)
    assert_clean_failure(rc, err, tmp_path / "cont", restart, "checkpoint_id", "the run was started with checkpoint "
                         "sha256:")
    assert "other.pt" in err and "a restart must continue with the same corrector" in err


def test_checkpoint_with_nan_weights_is_invalid(base, tmp_path, capsys):
    """Was: `icecorr checkpoint validate` called a diverged (NaN) checkpoint valid."""
    raw = torch.load(base["ck"], weights_only=True)
    name = next(k for k, t in raw["model_state"].items() if t.is_floating_point())
    raw["model_state"][name].view(-1)[0] = float("nan")
    bad = tmp_path / "diverged.pt"
    torch.save(raw, bad)
    rc, err = run_cli(["checkpoint", "validate", bad], capsys)
    assert_clean_failure(rc, err, tmp_path / "none", bad, None, f"model_state tensor '{name}' holds 1 non-finite")


# -------------------------------------------------------------------------------------- failing machines
def cli_subprocess(argv, limit_bytes: int | None = None, **kw) -> subprocess.Popen:
    """`icecorr ARGV` in a fresh interpreter; with `limit_bytes`, files cannot grow beyond it (EFBIG, as a full
    disk gives ENOSPC: the same failed write)."""
    code = "import sys\nfrom icecorr.cli.main import main\n"
    if limit_bytes:
        code += ("import resource, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                 f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes}))\n")
    code += "sys.exit(main(sys.argv[1:]))\n"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", code, *map(str, argv)], env=env, text=True, **kw)


def test_full_disk_during_correct_is_one_line_and_leaves_nothing(base, tmp_path):
    """Was: a netCDF traceback, then a segmentation fault (exit 139: close() raising inside `finally`)."""
    out = tmp_path / "out" / "c.nc"
    proc = cli_subprocess(correct_argv(base, out), limit_bytes=60_000, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{out}.partial: cannot write record" in lines[0] and "File too large" in lines[0], err
    assert os.listdir(tmp_path) == []  # no partial file, no lock, not even the folder made for them


@pytest.mark.parametrize("verb", ["couple", "emulate"])
def test_full_disk_during_an_ensemble_run_is_one_line_and_leaves_nothing(base, tmp_path, verb):
    """Was: "NetCDF: HDF error" traceback for couple. The file-size limit fails a write as a full disk does."""
    out = tmp_path / "out" / "r.nc"
    (tmp_path / "cfg").mkdir()
    # float64 records: the 60 kB limit is met while appending (not only when the complete file is compressed)
    argv = ensemble_argv(base, tmp_path / "cfg", verb, out, "couple.output_options.precision=float64")[0]
    proc = cli_subprocess(argv, limit_bytes=60_000, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{out}.partial" in lines[0] and "File too large" in lines[0], err
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_training_survives_a_closed_stdout_pipe(base, tmp_path):
    """`icecorr train … | head -1`: was BrokenPipeError, killing the training."""
    out = tmp_path / "run"
    argv = train_argv(base["good"], base["good"], out)
    argv = [*argv[:-1], "train.max_steps=4", "train.log_every=1", "train.val_every=2", argv[-1]]
    proc = cli_subprocess(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline()
    proc.stdout.close()  # head exits
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert "BrokenPipe" not in err and (out / "last.pt").exists() and (out / "best.pt").exists()
