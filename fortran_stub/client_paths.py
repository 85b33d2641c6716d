"""Where the built Fortran client (library, module file, source, C header) and the Fortran coarse driver live.

Works for a wheel install (files inside the package) and for the editable install of ./scripts/setup.sh (meson-python
maps the package's files to the build folder). `icecorr client-flags` prints `compile_flags()` / `link_flags()`.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def _package_file(*parts: str) -> Path:
    """Path of an installed file of the fortran_stub package; FileNotFoundError naming it if it was not built."""
    path = Path(str(resources.files("fortran_stub").joinpath(*parts)))
    if not path.exists():
        raise FileNotFoundError(f"fortran_stub/{'/'.join(parts)} is not installed: the package was built without "
                                f"MPI for Fortran (meson option coupling_client)")
    return path


def client_dir() -> Path:
    """Folder holding libicecorr_client.a and icecorr_client.mod."""
    return _package_file("client", "icecorr_client.mod").parent


def header_dir() -> Path:
    """Folder holding icecorr_client.h and the client's Fortran sources (the source tree in an editable install)."""
    return _package_file("client", "icecorr_client.h").parent


def client_library() -> Path:
    """The static client library libicecorr_client.a."""
    return _package_file("client", "libicecorr_client.a")


def driver_path() -> Path:
    """The standalone Fortran coarse-model driver (icecorr_coarse_driver)."""
    return _package_file("bin", "icecorr_coarse_driver")


def compile_flags() -> str:
    """Compiler flags a user's build needs to `use icecorr_client` (with the same gfortran: `mpifort`) or to
    include icecorr_client.h (`mpicc`)."""
    dirs = dict.fromkeys([client_dir(), header_dir()])
    return " ".join(f"-I{d}" for d in dirs)


def link_flags() -> str:
    """Linker flags for the client library (link with `mpifort`, which adds MPI's own)."""
    lib = client_library()
    return f"-L{lib.parent} -licecorr_client"
