"""`python -m training.fit` / `torchrun -m training.fit`: the training entry point."""
import sys

from training.fit.loop import main

sys.exit(main())
