"""Config and command-line faults (issue 21), driven through the command line: each once ended in a traceback, was
accepted silently, or said something unclear. Now: one line naming the file and the field (or option), exit 2 for
bad input, and nothing left behind; or, for the last cases, the behaviour a user expects (see docs/reliability.md).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from tests.cli import test_bad_inputs
from tests.cli.test_bad_inputs import assert_clean_failure, run_cli, write_couple_config
from tests.helpers.mpirun import run_mpi
from tests.helpers.paths import CONFIGS, REPO

base = test_bad_inputs.base  # fixture: a 6-record pair file, tiny checkpoints (residual, emulator)


def couple_config(base, tmp_path, text: str = "") -> Path:
    """A valid emulate/couple config (2 members, 2 steps) with `text` appended as extra YAML."""
    path = write_couple_config(tmp_path / "run.yaml", base["good"], base["ck_emu"], tmp_path / "out" / "run.nc")
    if text:
        path.write_text(path.read_text() + text)
    return path


# ------------------------------------------------------------------------------------------------ config files
def test_non_utf8_config_is_one_line(base, tmp_path, capsys):
    """Was: UnicodeDecodeError traceback."""
    path = couple_config(base, tmp_path)
    path.write_bytes(path.read_bytes() + b"# r\xe9sum\xe9 in Latin-1\n")
    rc, err = run_cli(["emulate", path], capsys)
    assert rc == 2
    assert_clean_failure(rc, err, tmp_path / "out", path, None, "not UTF-8 text (byte 0xe9 at line 4, column 4)")


def test_duplicate_yaml_key_is_refused_with_its_line(base, tmp_path, capsys):
    """Was: accepted silently (the last value won)."""
    path = tmp_path / "dup.yaml"
    path.write_text(f"initial: {base['good']}\ncouple:\n  members: 2\n  seed: 1\n  members: 3\n")
    rc, err = run_cli(["config", "validate", "couple", path], capsys)
    assert rc == 2
    assert_clean_failure(rc, err, tmp_path / "out", path, None,
                         "duplicate key 'couple.members' (line 5; first given at line 3)")
    assert err.startswith("icecorr config: error:")  # the verb, not the schema it validates


@pytest.mark.parametrize("override, field", [("couple.members=true", "couple.members"),
                                             ("couple.n_steps=false", "couple.n_steps"),
                                             ("couple.start_indices=[0, true]", "couple.start_indices"),
                                             ("couple.initial_perturbation=true", "couple.initial_perturbation")])
def test_boolean_is_not_a_number(base, tmp_path, capsys, override, field):
    """Was: `members=true` ran 1 member (pydantic's lax mode reads True as 1)."""
    path = couple_config(base, tmp_path)
    rc, err = run_cli(["config", "validate", "couple", path, override], capsys)
    assert rc == 2
    assert_clean_failure(rc, err, tmp_path / "out", path, field, "is a boolean, not" if "[" not in override
                         else "holds a boolean, not")


def test_boolean_count_in_training_config(tmp_path, capsys):
    rc, err = run_cli(["config", "validate", "train", CONFIGS / "train_tiny.yaml", "train.batch_size=true"], capsys)
    assert_clean_failure(rc, err, tmp_path, "train_tiny.yaml", "train.batch_size", "is a boolean, not an integer")


@pytest.mark.parametrize("verb, override, field", [("emulate", "couple.days=1e308", "couple.days"),
                                                   ("emulate", "couple.days=.inf", "couple.days"),
                                                   ("validate", f"couple.n_steps={10**40}", "couple.n_steps"),
                                                   ("validate", "couple.sampler_steps=1000000000",
                                                    "couple.sampler_steps")])
def test_absurd_lengths_are_bounded(base, tmp_path, capsys, verb, override, field):
    """Was: days=1e308 an OverflowError traceback, n_steps=1e40 and sampler_steps=1e9 accepted (a run that fills
    the memory or never ends: only validated here, so the old code cannot start such a run)."""
    path = couple_config(base, tmp_path, "")
    argv = ["emulate", path, override] if verb == "emulate" else ["config", "validate", "couple", path, override]
    rc, err = run_cli(argv, capsys)
    assert rc == 2
    assert_clean_failure(rc, err, tmp_path / "out", path, field)
    if "sampler" not in override:
        assert "longer than 36525 days (100 years" in err


def test_absurd_cyclone_length_is_bounded(tmp_path, capsys):
    path = tmp_path / "box.yaml"
    path.write_text("days: 1.0e308\n")
    rc, err = run_cli(["cyclone", path, "--out", tmp_path / "box"], capsys)
    assert_clean_failure(rc, err, tmp_path / "box", path, "days", "less than or equal to 365")


# -------------------------------------------------------------------------------------------- memory up front
def limited_cli(argv, limit_gib: int = 6) -> subprocess.CompletedProcess:
    """`icecorr ARGV` in a fresh interpreter under an address-space limit (`ulimit -v`): the memory check then does
    not depend on the machine, and code that allocates regardless fails with a MemoryError instead of exhausting
    the test machine."""
    code = (f"import resource, sys\nhard = resource.getrlimit(resource.RLIMIT_AS)[1]\n"
            f"soft = {limit_gib} * 2**30 if hard == resource.RLIM_INFINITY else min({limit_gib} * 2**30, hard)\n"
            "resource.setrlimit(resource.RLIMIT_AS, (soft, hard))\n"
            "from icecorr.cli.main import main\nsys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))


def test_huge_ensemble_is_refused_up_front(base, tmp_path):
    """Was: MemoryError traceback after start-up (and a partial output left): 100000 members of 16² cells need
    about 24 GiB."""
    path = couple_config(base, tmp_path)
    proc = limited_cli(["emulate", path, "couple.members=100000"])
    assert_clean_failure(proc.returncode, proc.stderr, tmp_path / "out", path, "couple.members", "GiB of memory")
    assert proc.returncode == 2


def test_huge_correct_ensemble_is_refused_up_front(base, tmp_path):
    out = tmp_path / "out" / "c.nc"
    proc = limited_cli(["correct", base["good"], "--checkpoint", base["ck"], "-o", out, "--members", "100000"],
                       limit_gib=3)
    assert_clean_failure(proc.returncode, proc.stderr, tmp_path / "out", None, "correct.members",
                         "need about 22.9 GiB of memory, but ")
    assert proc.returncode == 2


# ------------------------------------------------------------------------------------------------ command line
def test_overrides_after_an_option_are_taken(base, tmp_path, capsys):
    """Was: "unrecognized arguments" for an override after an option."""
    path = couple_config(base, tmp_path)
    rc, err, out = run_cli(["couple", path, "--seed", "3", "couple.members=5", "--dry-run", "couple.n_steps=4"], capsys,
                           with_stdout=True)
    assert rc == 0, err
    assert "members: 5" in out and "seed: 3" in out and "n_steps: 4" in out
    rc, err = run_cli(["couple", path, "--seed", "3", "not-an-override"], capsys)
    assert rc == 2 and "unrecognized arguments: not-an-override" in err


def test_training_overrides_after_an_option(base, tmp_path, capsys):
    val = tmp_path / "val.nc"
    val.write_bytes(base["good"].read_bytes())
    rc, err, out = run_cli(["train", CONFIGS / "train_tiny.yaml", "--seed", "1", "train.max_steps=5", "--dry-run",
                            f"train.data.train_file={base['good']}", f"train.data.val_file={val}"], capsys,
                           with_stdout=True)
    assert rc == 0, err
    assert "max_steps: 5" in out and "seed: 1" in out


@pytest.mark.parametrize("kind", ["folder", "link_loop", "dangling_link"])
@pytest.mark.parametrize("role", ["forecasts", "checkpoint"])
def test_input_that_is_not_a_file_says_what_it_is(base, tmp_path, capsys, kind, role):
    """Was: "forecast file does not exist" for a folder or a symbolic link loop."""
    odd = tmp_path / "odd"
    if kind == "folder":
        odd.mkdir()
    elif kind == "link_loop":
        os.symlink(tmp_path / "odd2", odd)
        os.symlink(odd, tmp_path / "odd2")
    else:
        os.symlink(tmp_path / "nowhere.nc", odd)
    what = {"folder": "is a folder, not a file", "link_loop": "is a symbolic link loop",
            "dangling_link": "which does not exist"}[kind]
    forecasts, ck = (odd, base["ck"]) if role == "forecasts" else (base["good"], odd)
    rc, err = run_cli(["correct", forecasts, "--checkpoint", ck, "-o", tmp_path / "out" / "c.nc"], capsys)
    assert rc == 2
    assert_clean_failure(rc, err, tmp_path / "out", odd, None, what)


def test_emulate_initial_file_that_is_a_folder(base, tmp_path, capsys):
    (tmp_path / "state").mkdir()
    path = write_couple_config(tmp_path / "run.yaml", tmp_path / "state", base["ck_emu"], tmp_path / "out" / "r.nc")
    rc, err = run_cli(["emulate", path], capsys)
    assert_clean_failure(rc, err, tmp_path / "out", tmp_path / "state", None, "initial file is a folder, not a file")


# ------------------------------------------------------------------------------------------------------- train
def train_args(train_file, val_file, out_dir, *more):
    return ["train", CONFIGS / "train_tiny.yaml", f"train.data.train_file={train_file}",
            f"train.data.val_file={val_file}", "train.max_steps=1", "train.val_every=1", "train.skill_batches=0",
            f"train.out_dir={out_dir}", *more, "--no-progress"]


@pytest.mark.parametrize("link", [False, True])
def test_validation_file_that_is_the_train_file_is_refused(base, tmp_path, capsys, link):
    """Was: accepted silently (validation scored the windows it trained on)."""
    val = base["good"]
    if link:
        val = tmp_path / "val.nc"
        os.symlink(base["good"], val)
    out = tmp_path / "run"
    rc, err = run_cli(train_args(base["good"], val, out, "train.batch_size=2"), capsys)
    assert rc == 2
    assert_clean_failure(rc, err, tmp_path / "run", None, "train.data", "is the train file")
    assert "allow_val_is_train" in err and not out.exists()


def test_validation_file_that_is_the_train_file_with_explicit_consent(base, tmp_path, capsys):
    rc, err = run_cli(["config", "validate", "train", CONFIGS / "train_tiny.yaml",
                       f"train.data.train_file={base['good']}", f"train.data.val_file={base['good']}",
                       "train.data.allow_val_is_train=true"], capsys)
    assert rc == 0, err


def test_fewer_windows_than_batch_size_is_one_line(base, tmp_path, capsys):
    """Was: a ValueError traceback (exit 1), config.yaml left in the run folder."""
    val = tmp_path / "val.nc"
    val.write_bytes(base["good"].read_bytes())
    out = tmp_path / "run"
    rc, err = run_cli(train_args(base["good"], val, out, "train.batch_size=8"), capsys)
    assert rc == 2
    assert_clean_failure(rc, err, out, base["good"], "train.batch_size",
                         "6 training window(s), fewer than train.batch_size (8)")
    assert not out.exists()


# ---------------------------------------------------------------------------------------- MPI and stdout
def test_no_rank_reports_success_after_rank_0_failed(base, tmp_path):
    """Was: under `mpiexec -n 3 icecorr correct`, ranks 1 and 2 printed "wrote …" after rank 0 had failed."""
    script = Path(__file__).with_name("mpi_rank0_fails.py")
    out = tmp_path / "out" / "c.nc"
    res = run_mpi(3, [str(script), "correct", str(base["good"]), "--checkpoint", str(base["ck"]), "-o", str(out)],
                  timeout=240, env={"PYTHONPATH": str(REPO)})
    assert res.returncode != 0, res.stderr
    assert "wrote" not in res.stdout, res.stdout
    assert "rank 0 of 3" in res.stderr and "rank 0 fails on purpose" in res.stderr


def test_full_stdout_does_not_fail_a_complete_run(base, tmp_path):
    """Was: `icecorr correct … > /dev/full` reported an OSError traceback and exit 1 though the output was complete.
    Now: exit 0, the output complete, the lost "wrote" line repeated on stderr under a warning."""
    out = tmp_path / "out" / "c.nc"
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "icecorr.cli", "correct", str(base["good"]), "--checkpoint",
                               str(base["ck"]), "-o", str(out)], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("icecorr correct: warning: could not write to stdout") and "No space left" in lines[0]
    assert lines[1:] == [f"wrote {out}"]
    with xr.open_dataset(out) as ds:
        assert ds.sizes["time"] == 6 and ds.attrs.get("status", "complete") == "complete"


def test_full_stdout_fails_when_stdout_is_the_product(base, tmp_path):
    """`icecorr config dump … > /dev/full`: the dump is lost, so that is a failure (exit 1, one line)."""
    path = couple_config(base, tmp_path)
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "icecorr.cli", "config", "dump", "couple", str(path)],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["icecorr config: error: could not write the output to stdout: "
                                                "[Errno 28] No space left on device"]
