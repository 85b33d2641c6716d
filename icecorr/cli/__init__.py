"""The `icecorr` command line: the top of the import graph (nothing else imports it)."""
from icecorr.cli.main import main

__all__ = ["main"]
