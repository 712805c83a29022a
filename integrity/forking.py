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
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Bumped in every forked child (:func:`generation`).
_FORKS = [0]
os.register_at_fork(after_in_child=lambda: _FORKS.__setitem__(0, _FORKS[0] + 1))


def generation() -> int:
    """How many forks lie between this process and the one that imported this module:
    a connection kept with the generation it was made in is this process's own only
    while the two are equal (a forked child must make its own, and never close or use
    the parent's)."""
    return _FORKS[0]


#: Items a forked child found kept by the process it was forked from (:class:`Kept`):
#: held here, never used, closed or let go (a pool connection that is garbage collected
#: goes back to its pool, which may roll it back or close it: on the parent's session).
_INHERITED: list[Any] = []


class Kept(Generic[T]):
    """At most ``limit`` connections kept checked out of their pool between uses, by an
    object rather than by a thread (a server thread that exits leaves none behind),
    for up to ``limit`` concurrent uses. :meth:`take` gives the last one kept by this
    process, if any; :meth:`keep` keeps one for the next use, or says the pool must
    have it back. One kept by the process a child was forked from is never given out
    in the child (:data:`_INHERITED`). Thread-safe: ``list.pop`` and ``append``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: list[tuple[int, T]] = []

    def take(self) -> T | None:
        while self._items:
            try:
                fork, item = self._items.pop()
            except IndexError:  # another thread took the last one
                break
            if fork == generation():
                return item
            _INHERITED.append(item)
        return None

    def keep(self, item: T) -> bool:
        """Keep ``item`` for the next :meth:`take`; ``False``: ``limit`` are kept
        already, the caller gives it back to its pool."""
        if len(self._items) >= self.limit:
            return False
        self._items.append((generation(), item))
        return True

    def drain(self) -> list[T]:
        """Everything kept that this process took (to close); the rest is held in
        :data:`_INHERITED`."""
        items, self._items = self._items, []
        mine = [item for fork, item in items if fork == generation()]
        _INHERITED.extend(item for fork, item in items if fork != generation())
        return mine

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        """What is kept, oldest first (whichever process took it)."""
        return iter([item for _, item in self._items])


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
