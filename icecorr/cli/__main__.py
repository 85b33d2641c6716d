"""`python -m icecorr.cli …`: the same as the `icecorr` command (used by the demo to launch its stages)."""
import sys

from icecorr.cli.main import main

sys.exit(main())
