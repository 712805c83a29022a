"""The garbage collector's policy for a process of this engine (one place says it).

Every ``integrity`` command is a process that builds many long-lived objects (an
ingest's limiter counters, a detection run's frame and holds, a server's caches).
Python's default collector runs a full collection each time the tracked heap has grown
by a quarter, traversing every module and object start-up made, again and again: 1.8 s
of the 4.4 s of CPU a 30,000-rating ingest took. So :func:`settle` freezes what the
process holds once it has started (moved out of every collection: it lives as long as
the process) and has collections run less often: the young generation every 10,000 net
allocations, a full one every 100 middle ones. Cyclic garbage is still collected,
young, as before.

It is applied where a process starts (``cli.run``, a benchmark's child process), never
inside a service: a service runs in processes whose policy is not its to change (tests
call commands in process and keep the interpreter's defaults).
"""

from __future__ import annotations

import gc

#: the collector's thresholds (young, middle, full) once settled
THRESHOLDS = (10_000, 20, 100)


def settle() -> None:
    """Freeze what this process holds now and collect less often (see the module)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
