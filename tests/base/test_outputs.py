"""The output guard (icecorr.base.outputs): every way an output path can lose data or fail late is refused at once
with one message naming the path; the lock lets one run at a time write an output; a closed stdout pipe is
survived."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from icecorr.base.outputs import (OutputError, OutputLock, check_output, check_outputs, guarded_outputs, lock_path,
                                  partial_path)
from tests.helpers.paths import REPO


@pytest.fixture()
def files(tmp_path):
    inp = tmp_path / "pairs.nc"
    inp.write_bytes(b"input")
    ck = tmp_path / "ck.pt"
    ck.write_bytes(b"checkpoint")
    return {"pair file": inp, "checkpoint": ck, "config": None}


def test_a_fresh_output_passes(tmp_path, files):
    assert check_output(tmp_path / "new" / "out.nc", files) == tmp_path / "new" / "out.nc"


@pytest.mark.parametrize("how", ["same", "relative", "hardlink", "symlink"])
def test_an_input_is_never_an_output(tmp_path, files, how, monkeypatch):
    inp = files["pair file"]
    if how == "same":
        out = inp
    elif how == "relative":
        monkeypatch.chdir(tmp_path / ".")
        (tmp_path / "sub").mkdir()
        out = "sub/../pairs.nc"
    elif how == "hardlink":
        out = tmp_path / "hard.nc"
        os.link(inp, out)
    else:
        out = tmp_path / "link.nc"
        out.symlink_to(inp)
    with pytest.raises(OutputError, match=r"the output is the run's pair file .*writing it would destroy the input"):
        check_output(out, files, overwrite=True)  # even with --overwrite
    assert inp.read_bytes() == b"input"


def test_the_checkpoint_is_never_an_output(files):
    with pytest.raises(OutputError, match="ck.pt: the output is the run's checkpoint"):
        check_output(files["checkpoint"], files, overwrite=True)


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out.nc"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match=r"out.nc: the output exists; pass --overwrite to replace it"):
        check_output(out)
    assert check_output(out, overwrite=True) == out


def test_partial_output_of_an_interrupted_run_needs_restart_or_overwrite(tmp_path):
    out = tmp_path / "out.nc"
    partial_path(out).write_bytes(b"records")
    with pytest.raises(OutputError, match=r"out.nc.partial: an interrupted run left this partial output; continue it "
                                          r"with --restart"):
        check_output(out)
    check_output(out, partial_ok=True)
    check_output(out, overwrite=True)


@pytest.mark.parametrize("kind, text", [("folder", "a folder"), ("fifo", "a named pipe"),
                                        ("loop", "a symbolic link loop"), ("dangling", "a dangling symbolic link")])
def test_output_that_is_not_a_regular_file(tmp_path, kind, text):
    out = tmp_path / "out.nc"
    if kind == "folder":
        out.mkdir()
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "loop":
        out.symlink_to(tmp_path / "loop2")
        (tmp_path / "loop2").symlink_to(out)
    else:
        out.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match=rf"out.nc: the output exists and is {text}; an output must be a regular"):
        check_output(out, overwrite=True)


def test_character_device_is_refused():
    with pytest.raises(OutputError, match="/dev/null: the output exists and is a character device"):
        check_output("/dev/null", overwrite=True)


@pytest.mark.parametrize("raw", ["", "  ", None])
def test_empty_path(raw):
    with pytest.raises(OutputError, match="^file '': the output path is empty$"):
        check_output(raw)


def test_name_too_long(tmp_path):
    with pytest.raises(OutputError, match=r"the output name is 300 bytes; at most \d+ fit"):
        check_output(tmp_path / ("a" * 297 + ".nc"))
    with pytest.raises(OutputError, match="folder name a{40}… is 300 bytes"):
        check_output(tmp_path / ("a" * 300) / "out.nc")


def test_parent_is_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OutputError, match=r"notes.txt/sub/out.nc: cannot write the output: .*notes.txt is a file, "
                                          r"not a folder"):
        check_output(tmp_path / "notes.txt" / "sub" / "out.nc")


def test_parent_not_writable(tmp_path, monkeypatch):
    """A read-only folder ([Errno 30] or permissions): refused before any work. (As root, permissions do not stop a
    write, so access() is what is asked; here it answers 'no' as on a read-only mount.)"""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(ro) else real(p, mode, **kw))
    with pytest.raises(OutputError, match=r"ro/out.nc: cannot write the output: folder .*ro is not writable"):
        check_output(ro / "out.nc")


def test_two_windows_onto_one_file(tmp_path):
    with pytest.raises(OutputError, match="two outputs of this run are the same file"):
        check_outputs([tmp_path / "a.nc", tmp_path / "." / "a.nc"])


def test_lock_refuses_a_second_run_naming_the_holder(tmp_path):
    out = tmp_path / "out.nc"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom icecorr.base.outputs import OutputLock\n"
                               "with OutputLock(sys.argv[1], command='icecorr correct first'):\n"
                               "    print('locked', flush=True)\n    time.sleep(60)\n", str(out)],
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=rf"out.nc.lock: another run is writing out.nc \(locked by pid "
                                              rf"{holder.pid} on .*icecorr correct first\)"):
            OutputLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    with OutputLock(out):  # the holder died: its flock is gone with it
        assert lock_path(out).exists()
    assert not lock_path(out).exists()


def test_guarded_outputs_lock_then_check_and_leave_nothing(tmp_path):
    out = tmp_path / "sub" / "out.nc"
    with guarded_outputs([out]) as paths:
        assert paths == [out] and lock_path(out).exists()
        with pytest.raises(OutputError, match="another run is writing out.nc"):
            with guarded_outputs([out]):
                pass
    assert os.listdir(tmp_path) == []  # lock removed, and the folder made for it
    out.parent.mkdir()
    out.write_bytes(b"done")
    with pytest.raises(OutputError, match="the output exists"):
        with guarded_outputs([out]):
            pass
    assert os.listdir(out.parent) == ["out.nc"]


PIPE_WRITER = """
import sys, time
from icecorr.base.outputs import survive_closed_stdout
survive_closed_stdout()
for i in range(20000):
    print(f"step {i}", flush=True)
open(sys.argv[1], "w").write("finished")
"""


def test_work_goes_on_after_stdout_pipe_closes(tmp_path):
    """`icecorr train … | head`: was BrokenPipeError, killing the training."""
    done = tmp_path / "done.txt"
    proc = subprocess.Popen([sys.executable, "-c", PIPE_WRITER, str(done)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout.readline() == b"step 0\n"
    proc.stdout.close()  # like `head -1` exiting
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert done.read_text() == "finished" and "BrokenPipe" not in err
