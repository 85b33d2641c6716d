"""`icecorr --version`: the installed package version (importlib.metadata), exit status 0."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def test_version_prints_the_package_version_and_exits_0():
    run = subprocess.run([sys.executable, "-m", "icecorr.cli", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"icecorr {version('icecorr')}"
