"""``python -m simulation --seed 7 --out DIR``: see :func:`simulation.cli.main`."""

from __future__ import annotations

import sys

from simulation.cli import main

if __name__ == "__main__":
    sys.exit(main())
