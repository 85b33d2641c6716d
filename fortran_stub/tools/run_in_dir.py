"""Run a command inside a directory, with file arguments made absolute first.

f90wrap writes its outputs into the current directory; meson runs custom targets from the build root,
so the glue would land in the wrong place without this.
"""
import os
import subprocess
import sys


def main() -> int:
    """`run_in_dir.py WORKDIR COMMAND...`: run COMMAND in WORKDIR (created if missing); returns its exit code."""
    workdir, *command = sys.argv[1:]
    command = [os.path.abspath(a) if os.path.exists(a) else a for a in command]
    os.makedirs(workdir, exist_ok=True)
    return subprocess.call(command, cwd=workdir)


if __name__ == "__main__":
    sys.exit(main())
