"""The Fortran sea-ice model (coarse mEVP-VP and BBM truth), wrapped with f90wrap."""
from . import seaice  # noqa: F401  (f90wrap shadow module over the `_seaice` extension)
