"""icecorr: the distribution's own namespace: `icecorr.base` (shared plumbing, the bottom layer) and `icecorr.cli` (the command line, the top)."""
