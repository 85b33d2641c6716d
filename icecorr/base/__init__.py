"""The bottom layer shared by every package: errors, the variable table, NetCDF files, strict configs, MPI launch environment. Imports nothing else of the project."""
