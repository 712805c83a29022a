"""Processes for CPU work, forked from this one (Linux).

Python runs one thread at a time, so work that is CPU-bound and independent of what
this process does meanwhile (parsing a batch file's lines, sealing what a batch wrote)
goes to a forked child: it inherits what it needs (the instance key, the ledger's
settings) without anything being pickled, leaves through ``os._exit`` (no clean-up
touches what it shares with the parent), and is killed when the parent dies, however
it dies (``PR_SET_PDEATHSIG``: it would otherwise wait forever on a pipe whose other
end it holds itself). A fork copies only the calling
thread, so one is made only while no other thread runs (another thread may hold a
lock the child would need); elsewhere, and on macOS or Windows, callers do the work
in process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

#: Bumped in every forked child (:func:`generation`).
_FORKS = [0]
os.register_at_fork(after_in_child=lambda: _FORKS.__setitem__(0, _FORKS[0] + 1))


def generation() -> int:
    """How many forks lie between this process and the one that imported this module:
    a connection kept with the generation it was made in is this process's own only
    while the two are equal (a forked child must make its own, and never close or use
    the parent's)."""
    return _FORKS[0]


def fork_pool(
    initializer: Callable[..., None], initargs: tuple[Any, ...], workers: int = 1
) -> ProcessPoolExecutor | None:
    """A pool of ``workers`` forked workers, each first running ``initializer(*initargs)``
    (inherited, not pickled); ``None`` where forking is not safe here. All are forked
    at the first submit, before the pool starts a thread of its own."""
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_child,
        initargs=(os.getpid(), initializer, initargs),
    )


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _child(parent: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    initializer(*initargs)
