"""Batches of ratings as columns (numpy arrays keyed by field), so a million rows stays
fast: the column set, how to make, join and index batches, and a garbage-collector pause
for building many acyclic objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from simulation.model import DIMENSIONS

# Columns of a batch of ratings (internal, columnar so a million rows stays fast).
_COLS: dict[str, Any] = {
    "ticket": object,  # str
    "window": np.int32,
    "staff": np.int32,  # true staff index, -1 unknown
    "staff_shown": np.bool_,  # staff_id sent
    "stype": np.int16,
    "channel": np.int8,
    "served": np.int64,  # epoch seconds
    "served_ok": np.bool_,  # served_at sent
    "submitted": np.int64,  # epoch seconds
    "scores": np.int8,  # (n, 5)
    "comment": object,  # str | None
    "ipk": np.int8,  # _IPK_*
    "ip4": np.int64,
    "ip6h": np.uint64,
    "ip6l": np.uint64,
    "devh": np.uint64,
    "devl": np.uint64,
    "kind": np.int8,
    "attack": np.int32,  # index into World.attacks, -1 none
}
_Batch = dict[str, np.ndarray]


def _empty(n: int) -> _Batch:
    b: _Batch = {}
    for name, dtype in _COLS.items():
        shape = (n, len(DIMENSIONS)) if name == "scores" else (n,)
        b[name] = np.zeros(shape, dtype=dtype)
    b["ticket"] = np.empty(n, dtype=object)
    b["comment"] = np.full(n, None, dtype=object)
    b["staff"][:] = -1
    b["served_ok"][:] = True
    b["attack"][:] = -1
    return b


def _concat(batches: list[_Batch]) -> _Batch:
    return {k: np.concatenate([b[k] for b in batches]) for k in _COLS}


def _take(b: _Batch, idx: np.ndarray) -> _Batch:
    return {k: v[idx] for k, v in b.items()}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic objects."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
