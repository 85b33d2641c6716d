#!/usr/bin/env bash
# One-shot set-up on a fresh Debian machine (idempotent): system packages, a venv in .venv, the Python
# dependencies and an editable build of icecorr (compiles the Fortran model through meson-python + f90wrap).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v gfortran >/dev/null 2>&1 || need_apt+=(gfortran)
command -v mpiexec >/dev/null 2>&1 || need_apt+=(openmpi-bin libopenmpi-dev)
[ -e /usr/include/x86_64-linux-gnu/mpi/mpi.h ] || [ -e /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] || need_apt+=(libopenmpi-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
PY=.venv/bin/python
# meson-python runs `meson` and `ninja` from PATH, also later when the editable install rebuilds on import
export PATH="$PWD/.venv/bin:$PATH"
quiet() { grep -v "^WARNING: Location" || true; }  # pip's notes about this machine's local wheel folders
stamp=.venv/.icecorr-deps
deps_hash=$(sha1sum pyproject.toml | cut -c1-40)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$deps_hash" ]; then
  echo "[setup] installing the build requirements and icecorr with its dependencies (pyproject.toml)"
  $PY -m pip install -q --upgrade pip 2>&1 | quiet
  # the build requirements of pyproject.toml, in the venv: editable meson-python builds need them there
  $PY -m pip install -q "meson-python>=0.15" "meson>=1.1" ninja "numpy>=2" "f90wrap==0.3.0" 2>&1 | quiet
  # runtime + test dependencies; torch is pinned there to the CPU wheel on this machine's disk
  $PY -m pip install -q --no-build-isolation -e ".[test]" 2>&1 | quiet
  echo "$deps_hash" > "$stamp"
else
  echo "[setup] building icecorr (Fortran + Python, editable)"
  $PY -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | quiet
fi
$PY -c "import fortran_stub, corrector, coupling, training, icecorr" 
echo "[setup] done: $($PY -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)')"
