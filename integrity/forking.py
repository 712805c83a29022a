"""A second process for CPU work, forked from this one (Linux).

Python runs one thread at a time, so work that is CPU-bound and independent of what
this process does meanwhile (parsing a batch file's lines, sealing what a batch wrote)
goes to a forked child: it inherits what it needs (the instance key, the ledger's
settings) without anything being pickled, and leaves through ``os._exit`` (no
clean-up touches what it shares with the parent). A fork copies only the calling
thread, so one is made only while no other thread runs (another thread may hold a
lock the child would need); elsewhere, and on macOS or Windows, callers do the work
in process.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def fork_pool(
    initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> ProcessPoolExecutor | None:
    """A pool of one forked worker that first runs ``initializer(*initargs)``
    (inherited, not pickled); ``None`` where forking is not safe here."""
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    return ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("fork"),
        initializer=initializer,
        initargs=initargs,
    )
