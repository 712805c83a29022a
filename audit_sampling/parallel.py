"""Drawing from a frame on several processes (consistent sampling is mergeable).

The parent reads the frame once, hashing every byte in order, and hands chunks to
worker processes; each worker checks its chunks (:func:`~audit_sampling.formats.parse_block`)
and draws from them (:class:`~audit_sampling.sampler.Sampling`); the parent checks
the order across chunks and the stratum counts, and merges the workers' states.
The result is exactly :func:`~audit_sampling.sampler.draw`'s; memory stays bounded
(a few chunks in flight plus each worker's sample).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from collections.abc import Callable, Mapping
from typing import Any

from audit_sampling.formats import FrameDigest, FrameError, FrameReader, parse_block
from audit_sampling.sampler import Draw, Sampling, Shortfall


def default_workers() -> int:
    """One worker per CPU this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def draw_frame(
    source: FrameReader | Callable[[], FrameReader],
    seed: str,
    takes: Mapping[str, int],
    *,
    risk_take: int = 0,
    risk_min: float = 0.0,
    risk_base: Mapping[str, int] | None = None,
    workers: int = 1,
) -> tuple[Draw, FrameDigest]:
    """Draw from every row of a frame and check the whole frame; ``workers`` processes.

    ``source`` is a reader, or a function that opens one: then the draw starts each
    window's bar from the frame's stratum sizes (most rows are rejected at once) and,
    in the rare case a window comes up short, reads the frame again without.
    ``workers <= 1`` draws in this process. Raises :class:`FrameError` for the first
    defect (by line) and ``ValueError`` for bad settings.
    """
    options: dict[str, Any] = {"risk_take": risk_take, "risk_min": risk_min, "risk_base": risk_base}
    Sampling(seed, takes, **options)  # settings errors surface here, not in a worker
    if not callable(source):
        return _draw_frame(source, seed, takes, options, workers, optimistic=False)
    try:
        return _draw_frame(source(), seed, takes, options, workers, optimistic=True)
    except Shortfall:
        return _draw_frame(source(), seed, takes, options, workers, optimistic=False)


def _draw_frame(
    reader: FrameReader,
    seed: str,
    takes: Mapping[str, int],
    options: dict[str, Any],
    workers: int,
    optimistic: bool,
) -> tuple[Draw, FrameDigest]:
    options = {**options, "sizes": dict(reader.header.strata) if optimistic else None}
    if workers <= 1:
        sampling = Sampling(seed, takes, **options)
        sampling.feed(reader)
        digest = reader.finish()
        return sampling.finish(), digest
    ctx: Any = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    inbox: Any = ctx.Queue(maxsize=2 * workers)
    outbox: Any = ctx.Queue()
    procs = [
        ctx.Process(
            target=_work,
            args=(inbox, outbox, seed, dict(takes), options, dict(reader.decode)),
            daemon=True,
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    blocks: dict[int, tuple[int, int, int, dict[str, int]]] = {}
    errors: list[tuple[int, str]] = []
    states: list[Any] = []

    def collect(msg: tuple[Any, ...]) -> None:
        if msg[0] == "block":
            blocks[msg[1]] = msg[2:]
        elif msg[0] == "error":
            errors.append((msg[1], msg[2]))
        elif msg[0] == "state":
            states.append(msg[1])

    count = 0
    try:
        for text, n, line in reader.raw_blocks():
            count += 1
            while True:
                try:
                    inbox.put((count, text, n, line), timeout=0.05)
                    break
                except queue.Full:
                    _drain(outbox, collect, procs)
            _drain(outbox, collect, procs, block=False)
        for _ in procs:
            inbox.put(None)
        while len(states) < workers:
            _drain(outbox, collect, procs)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    if errors:
        line, message = min(errors)
        raise FrameError(line, message) if line >= 0 else ValueError(message)
    prev = -1
    for i in range(1, count + 1):
        first, last, start, seen = blocks[i]
        if first <= prev:
            raise FrameError(
                start + 1, f"rating id {first} does not ascend (after {prev}): duplicated or moved"
            )
        reader.add_counts(seen)
        prev = last
    sampling = Sampling(seed, takes, **options)
    for st in states:
        sampling.merge(st)
    return sampling.finish(), reader.finish()


def _drain(outbox: Any, collect: Any, procs: list[Any], block: bool = True) -> None:
    """Collect what the workers sent; fail if one of them died."""
    try:
        while True:
            collect(outbox.get(timeout=0.05) if block else outbox.get_nowait())
            block = False
    except queue.Empty:
        dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
        if dead:
            raise RuntimeError(f"a sampling worker died (exit code {dead[0]})") from None


def _work(
    inbox: Any,
    outbox: Any,
    seed: str,
    takes: dict[str, int],
    options: dict[str, Any],
    decode: dict[str, str],
) -> None:
    """A worker: check and draw from chunks until told to stop, then send its state."""
    sampling = Sampling(seed, takes, **options)
    while True:
        msg = inbox.get()
        if msg is None:
            break
        index, text, n, line = msg
        try:
            block = parse_block(text, n, line, -1, decode)
            sampling.feed(block.rows())
            outbox.put(("block", index, block.ids[0], block.ids[-1], line, dict(block.seen)))
        except FrameError as err:
            outbox.put(("error", err.line, err.message))
        except ValueError as err:
            outbox.put(("error", -1, str(err)))
    outbox.put(("state", sampling.state()))
