"""Run every benchmark and evaluation in ``bench/``, one after another (``make bench``).

Each prints its own ratios against a floor measured in the same run. Heavy: minutes
to an hour on two cores; never part of the test suite or CI.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = sorted(p for p in HERE.glob("*.py") if p.stem.startswith(("bench_", "eval_")))


def main(argv: list[str]) -> int:
    """Run the scripts whose names contain one of ``argv`` (all when none is given)."""
    chosen = [p for p in SCRIPTS if not argv or any(a in p.stem for a in argv)]
    failed = []
    for path in chosen:
        print(f"\n=== {path.stem} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"bench.{path.stem}"], cwd=HERE.parent)
        print(f"=== {path.stem}: exit {rc} after {time.perf_counter() - t0:.0f} s ===", flush=True)
        if rc:
            failed.append(path.stem)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
