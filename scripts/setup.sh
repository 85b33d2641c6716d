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
stamp=.venv/.icecorr-deps
deps_hash=$(sha1sum pyproject.toml | cut -c1-40)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$deps_hash" ]; then
  echo "[setup] installing Python dependencies"
  $PY -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  # torch pinned to the CPU wheel on this machine's disk (an unpinned torch pulls a multi-GB CUDA build)
  $PY -m pip install -q torch==2.13.0 numpy xarray netCDF4 mpi4py f90wrap==0.3.0 pydantic pyyaml tqdm \
      matplotlib scipy pytest pytest-timeout hypothesis meson-python meson ninja 2>&1 | grep -v "^WARNING: Location" || true
  echo "$deps_hash" > "$stamp"
fi
echo "[setup] building icecorr (Fortran + Python, editable)"
$PY -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
$PY -c "import fortran_stub, corrector, coupling, training, icecorr" 
echo "[setup] done: $($PY -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)')"
