# Every target sets up what it needs first (apt packages, .venv, Fortran build): see scripts/setup.sh.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1

PY := .venv/bin/python
# the editable install rebuilds the Fortran extension on import with meson/ninja from the venv
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo test bench longrun arctic
setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/icecorr demo

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests

bench: setup
	$(PY) -m benchmarks

longrun: setup
	./scripts/longrun.sh

# Arctic emulator: BBM pairs on the Arctic grid over MPI, patch training, 3-year rollouts, report (docs/arctic.md)
arctic: setup
	./scripts/arctic.sh
