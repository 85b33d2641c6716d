"""Progress bars (icecorr.base.progress): silent on a stream that is not a terminal, a tqdm bar on one (or when
forced), and a verb's loop shows it through a pseudo-terminal but not through a pipe."""
from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

from icecorr.base.progress import NoProgress, is_terminal, progress
from tests.helpers.paths import REPO


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_silent_on_a_stream_that_is_not_a_terminal():
    stream = io.StringIO()
    bar = progress(range(3), desc="generate", stream=stream)
    assert isinstance(bar, NoProgress) and list(bar) == [0, 1, 2]
    counter = progress(total=5, desc="train", stream=stream)
    counter.update(2)
    counter.set_postfix(loss="0.1")
    counter.close()
    assert stream.getvalue() == ""
    assert not is_terminal(stream)


def test_a_bar_on_a_terminal_or_when_forced():
    for stream, enabled in ((FakeTerminal(), None), (io.StringIO(), True)):
        assert list(progress(range(3), desc="emulate", unit="step", stream=stream, enabled=enabled)) == [0, 1, 2]
        text = stream.getvalue()
        assert "emulate" in text and "3/3" in text, text
    quiet = FakeTerminal()
    assert list(progress(range(2), stream=quiet, enabled=False)) == [0, 1] and quiet.getvalue() == ""


def test_a_closed_or_fake_stream_is_no_terminal():
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed) and not is_terminal(object())


EMULATE = """
import sys
from pathlib import Path
from coupling.config import CoupleConfig
from coupling.emulate import run_emulate
from coupling.forcing import FileForcing
from tests.mpi_scripts.pairs import make_pair_file
from tests.mpi_scripts.tiny import tiny_corrector
out = Path(sys.argv[1])
pairs = make_pair_file(out / "pairs.nc", n_time=4)
run_emulate(CoupleConfig(members=2, n_steps=3, start_indices=[0]), pairs, FileForcing(pairs), out / sys.argv[2],
            comm=None, corrector=tiny_corrector(mode="emulator"))
"""


def _emulate(tmp_path, name: str, stderr) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", EMULATE, str(tmp_path), name], stdout=subprocess.DEVNULL,
                            stderr=stderr, env=env)


def test_emulate_shows_progress_on_a_terminal_only(tmp_path):
    """stderr a pseudo-terminal: the run's bar ('emulate', 4 records: the start and 3 steps); a pipe: nothing."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns, as a terminal has
    proc = _emulate(tmp_path, "tty.nc", slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk and proc.poll() is not None:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "emulate" in text and "4/4" in text, text
    piped = _emulate(tmp_path, "pipe.nc", subprocess.PIPE)
    _, err = piped.communicate(timeout=300)
    assert piped.returncode == 0, err.decode()
    assert "emulate" not in err.decode() and "4/4" not in err.decode(), err.decode()


def test_correct_shows_its_chunks_on_a_terminal(tmp_path, monkeypatch, capsys):
    """`icecorr correct` (pair file, 4 records in chunks of 2): 'correct … 2/2' when stderr is a terminal, else
    nothing."""
    import icecorr.base.progress as progress_module
    from coupling.config import CorrectConfig
    from coupling.correct import run_correct
    from tests.mpi_scripts.pairs import make_pair_file
    from tests.mpi_scripts.tiny import tiny_corrector

    pairs = make_pair_file(tmp_path / "pairs.nc", n_time=4)
    cfg = CorrectConfig(members=2, chunk_size=2)
    run_correct(cfg, pairs, tmp_path / "quiet.nc", comm=None, corrector=tiny_corrector())
    assert "correct" not in capsys.readouterr().err
    monkeypatch.setattr(progress_module, "is_terminal", lambda stream=None: True)
    run_correct(cfg, pairs, tmp_path / "tty.nc", comm=None, corrector=tiny_corrector())
    err = capsys.readouterr().err
    assert "correct" in err and "2/2" in err, err
