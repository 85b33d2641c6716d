"""Paths the tests share: the repository root, its configs and the MPI job scripts."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
MPI_SCRIPTS = REPO / "tests" / "mpi_scripts"
