"""Batch intake from JSON Lines: read, parse (in forked processes), judge in order, summarise."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any, TextIO

from integrity.errors import EngineError, FieldError, InvalidInput
from integrity.forking import fork_pool
from integrity.hook import IngestItem, ValidationHook
from integrity.log import MerkleLog, adopt, seal_adopted
from integrity.model import Rating, Rubric
from integrity.parsing import parse_rating
from integrity.pseudonym import Pseudonymiser

if TYPE_CHECKING:
    from integrity.adapters.sql import SqlLedger
    from integrity.app import App

_logger = logging.getLogger("integrity.ingest")

#: non-blank lines parsed together, with one time of receipt
BLOCK = 2000
#: blocks handed to the parsing processes ahead of the one being judged
AHEAD = 3
#: blocks handed over between two catch-ups (closing hooks and seal) with what is
#: committed, made by a parsing process
SEAL_EVERY = 3
#: ratings a file's ingest commits before it refreshes the planner's statistics
ANALYZE_AFTER = 10_000


def parsers() -> int:
    """How many processes parse a batch: two where there are two processors or more.

    Parsing (decoding, pseudonymising, fingerprinting) costs more than judging and
    writing, so one parser kept the judging process waiting for blocks (a 30k month
    on PostgreSQL, on a busy machine: 2.6-4.5 s of its 5-7 s; 0.7-0.9 s with two);
    two share the blocks, each block's result still taken in order."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


Parsed = Rating | InvalidInput


def parse_lines(
    lines: list[str],
    *,
    rubric: Rubric,
    pseudonymiser: Pseudonymiser,
    received_at: datetime,
    client_id: str | None,
) -> list[Parsed]:
    """Each line decoded and parsed (received at ``received_at``), or why it is refused."""
    out: list[Parsed] = []
    for line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            msg = f"not valid JSON: {err.msg} at column {err.colno}"
            out.append(InvalidInput([FieldError("(line)", msg)]))
            continue
        try:
            out.append(
                parse_rating(
                    obj,
                    rubric=rubric,
                    pseudonymiser=pseudonymiser,
                    received_at=received_at,
                    client_id=client_id,
                )
            )
        except InvalidInput as err:
            out.append(err)
    return out


def parse_jsonl(
    hook: ValidationHook,
    stream: TextIO,
    *,
    client_id: str | None = None,
    workers: bool = True,
    log: MerkleLog | None = None,
    closing: Sequence[Callable[[], object]] = (),
) -> Iterator[Parsed]:
    """Every non-blank line of ``stream`` parsed, in order (see :func:`parse_lines`).

    Blocks of :data:`BLOCK` lines are parsed in forked processes (:func:`parsers`;
    :mod:`integrity.forking`: they hold the instance key as this one does; raw
    addresses and devices only ever cross a pipe between them and this one, never
    storage or a log) while this one judges and writes what came before, taking each
    block's result in order; each block's time of receipt is read from the hook's
    clock when it is handed over. A file of one block, ``workers=False``, or where no
    process can be forked, parses here, by the same function.

    With ``log``, a parsing process also catches up with what the batch has committed
    so far: it runs ``closing`` (the App's closing hooks: the alerts' projection, which
    follows the ledger by its own cursor) and seals, so that the close has only the
    rest to do; one catch-up at a time. It does so at most every :data:`SEAL_EVERY`
    blocks, when every block handed over is parsed, or after four times as many
    blocks when never. What fails there only warns: the close does it again.
    """
    rubric, pseudonymiser = hook.config.rubric, hook.pseudonymiser
    blocks = _blocks(stream)
    first = next(blocks, None)
    if first is None:
        return
    second = next(blocks, None)
    pool = (
        fork_pool(_set_worker, (rubric, pseudonymiser, log, closing), parsers())
        if second and workers
        else None
    )
    if pool is None:
        for lines in _chain(first, second, blocks):
            yield from parse_lines(
                lines,
                rubric=rubric,
                pseudonymiser=pseudonymiser,
                received_at=hook.clock.now(),
                client_id=client_id,
            )
        return
    with pool:
        inflight: deque[Future[list[Parsed]]] = deque()
        catching: Future[int] | None = None  # the catch-up in flight
        try:
            since = 0  # blocks handed over since the last catch-up
            for lines in _chain(first, second, blocks):
                since += 1
                # parsing comes first: while blocks wait, up to four times as long
                idle = all(f.done() for f in inflight)
                due = since >= (SEAL_EVERY if idle else 4 * SEAL_EVERY)
                if log is not None and due and (catching is None or catching.done()):
                    _caught_up(catching)
                    catching = pool.submit(_catch_up, hook.clock.now())
                    since = 0
                inflight.append(pool.submit(_parse_here, lines, hook.clock.now(), client_id))
                if len(inflight) > AHEAD:
                    yield from inflight.popleft().result()
            while inflight:
                yield from inflight.popleft().result()
            _caught_up(catching)
        finally:
            for f in inflight:  # the consumer stopped early: nothing more is parsed
                f.cancel()


def _caught_up(catching: Future[int] | None) -> None:
    """Wait for a catch-up made beside the batch (a failure warns: close does it again)."""
    if catching is None:
        return
    try:
        catching.result()
    except EngineError as err:
        _logger.warning("catching up beside the batch failed (the close does it): %s", err)


_parser: tuple[Rubric, Pseudonymiser] | None = None  # set in each parsing process
_closing: Sequence[Callable[[], object]] = ()  # the parent's closing hooks, inherited


def _set_worker(
    rubric: Rubric,
    pseudonymiser: Pseudonymiser,
    log: MerkleLog | None,
    closing: Sequence[Callable[[], object]],
) -> None:
    global _parser, _closing
    _parser = (rubric, pseudonymiser)
    if log is not None:
        adopt(log)  # the ledger's connections, the hooks' too, are this process's own
        _closing = closing


def _catch_up(now: datetime) -> int:
    """In a parsing process: the closing hooks for what is committed, then a seal."""
    for task in _closing:
        task()
    return seal_adopted(now, beside=True)


def _parse_here(lines: list[str], received_at: datetime, client_id: str | None) -> list[Parsed]:
    assert _parser is not None, "the parsing process was started without its parser"
    rubric, pseudonymiser = _parser
    return parse_lines(
        lines,
        rubric=rubric,
        pseudonymiser=pseudonymiser,
        received_at=received_at,
        client_id=client_id,
    )


def _blocks(stream: TextIO) -> Iterator[list[str]]:
    lines = (s for s in (raw.strip() for raw in stream) if s)
    while block := list(islice(lines, BLOCK)):
        yield block


def _chain(
    first: list[str], second: list[str] | None, rest: Iterator[list[str]]
) -> Iterator[list[str]]:
    yield first
    if second is not None:
        yield second
        yield from rest


@dataclass
class IngestSummary:
    lines: int = 0
    written: int = 0
    replayed: int = 0
    refused: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[int, InvalidInput]] = field(default_factory=list)

    def add(self, item: IngestItem) -> None:
        self.lines += 1
        if item.error is not None:
            self.refused += 1
            if len(self.errors) < 1000:
                self.errors.append((item.line, item.error))
            return
        d = item.decision
        assert d is not None
        if d.replayed:
            self.replayed += 1
            return
        self.written += 1
        self.statuses[d.status.value] += 1
        self.reasons.update(d.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "written": self.written,
            "identical_retries": self.replayed,
            "refused": self.refused,
            "statuses": dict(sorted(self.statuses.items())),
            "reasons": dict(self.reasons.most_common()),
        }


def ingest(
    hook: ValidationHook,
    objs: Iterable[Any],
    *,
    replay: bool = True,
    on_progress: Callable[[int], None] | None = None,
    client_id: str | None = None,
    chunk: int = 5000,
) -> IngestSummary:
    """Run every object (decoded JSON) through the hook in order (see :func:`judge`)."""
    parsed = hook.parse_each(objs, client_id=client_id)
    return judge(hook, parsed, replay=replay, on_progress=on_progress, chunk=chunk)


def judge(
    hook: ValidationHook,
    parsed: Iterable[Parsed],
    *,
    replay: bool = True,
    on_progress: Callable[[int], None] | None = None,
    chunk: int = 5000,
) -> IngestSummary:
    """Judge parsed ratings in order; refused lines are counted, not written.

    ``chunk`` ratings are judged and written together (one transaction)."""
    summary = IngestSummary()
    for item in hook.judge_stream(
        parsed,
        replay=replay,
        on_progress=on_progress,
        chunk=chunk,
        receipts=False,  # a summary: no rater reads these decisions
    ):
        summary.add(item)
    return summary


def ingest_file(
    app: App,
    stream: TextIO,
    *,
    client_id: str | None = None,
    replay: bool = True,
    on_progress: Callable[[int], None] | None = None,
    chunk: int = 5000,
) -> IngestSummary:
    """A JSON Lines file through ``app``'s hook (``integrity ingest``): its lines parsed
    beside the judging, with the catch-ups of :func:`parse_jsonl`, judged and written
    in chunks of ``chunk`` (:func:`judge`), and the database's planner statistics
    refreshed in a thread once :data:`ANALYZE_AFTER` ratings are committed (on
    PostgreSQL, so that what reads the load at close, the alerts' projection, and after
    it is planned for a table that is not empty; statistics of part of a load are
    enough, the planner scales them to the table's size on disk). It returns with no
    thread left, so the close can fork its sealer."""
    refresh = _Statistics(app.ledger)
    try:
        return judge(
            app.hook,
            parse_jsonl(app.hook, stream, client_id=client_id, log=app.log, closing=app.closing),
            replay=replay,
            on_progress=refresh.after(on_progress),
            chunk=chunk,
        )
    finally:
        refresh.join()


class _Statistics:
    """The planner's statistics refreshed once, in a thread, when enough is committed.
    A failure only warns: they are a matter of speed, and autovacuum refreshes them
    later."""

    def __init__(self, ledger: SqlLedger) -> None:
        self.ledger = ledger
        self.committed = 0
        self.thread: threading.Thread | None = None

    def after(self, tick: Callable[[int], None] | None) -> Callable[[int], None]:
        """``tick`` (progress), which also starts the refresh once enough is committed."""

        def on_progress(n: int) -> None:
            if tick is not None:
                tick(n)
            self.committed += n
            if self.thread is None and self.committed >= ANALYZE_AFTER:
                self.thread = threading.Thread(target=self._run, name="analyze", daemon=True)
                self.thread.start()

        return on_progress

    def _run(self) -> None:
        try:
            self.ledger.analyze()
        except EngineError as err:
            _logger.warning("planner statistics not refreshed: %s", err)

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
