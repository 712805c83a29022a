"""Tamper evidence: events are sealed, after the fact, into an RFC 9162 Merkle log.

The hot path only inserts rows. ``seal`` takes the events not yet in the log, in
event-id order, and appends one leaf per event (a decision event's leaf also
covers its rating row) in small blocks under one lock on the log head; writers are
never blocked by it. ``verify`` recomputes every leaf from the current rows and
says where the ledger differs from what was sealed; a checkpoint (size and root
hash) kept by an auditor proves that today's log still extends yesterday's.

Verify also covers what is not a leaf: the status rows and risk against their
events, every stored rule set against its id and its sealed SHA-256 (and every rule
set a rating or event cites must be stored), each configuration table against its
latest ``config.sealed`` event (:mod:`integrity.config_tables`), and each checkpoint a
``ledger.checkpoint`` event recorded. Events not yet sealed are listed as a warning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from integrity import merkle
from integrity.adapters import tables as t
from integrity.adapters.sql import (
    SqlLedger,
    decode_risks,
    risk_digest,
    risk_digest_columns,
    score_column_mismatches,
)
from integrity.catalogue import Kind
from integrity.config import rule_set_id
from integrity.config_tables import current_columns
from integrity.errors import AlreadyExists
from integrity.model import Event, Status
from integrity.sqlkit import UTCDateTime, translate_errors

UTC_TIME = UTCDateTime()
_SQLITE = sqlite_dialect.dialect()

#: How many unsealed events verify lists by id.
UNSEALED_SHOWN = 10
#: How many blocks a seal hashes before it writes the first of them (a hash and an id
#: kept per event: about 10 MB at the default block of 5,000 events).
HASH_AHEAD = 20

EVENT_FIELDS = (
    "event_id",
    "rating_id",
    "subject",
    "kind",
    "actor",
    "status",
    "reasons",
    "rule_set_id",
    "evidence",
    "at",
)
# Leaf format v1: a fixed list of fields, so a later migration that adds a column does
# not change what earlier leaves hash. A new format gets a new version (and a new list).
LEAF_FORMAT = 1
RATING_FIELDS = (
    "rating_id",
    "fingerprint",
    "ticket_id",
    "claims_ticket",
    "window_id",
    "staff_id",
    "service_type",
    "channel",
    "served_at",
    "submitted_at",
    "submitted_at_given",
    "received_at",
    "occurred_at",
    "scores",
    "composite",
    "comment",
    "ip_hash",
    "prefix_hash",
    "device_hash",
    "rule_set_id",
)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def leaf_data(
    event: Mapping[Any, Any], rating: Mapping[Any, Any] | None, prefix: str = ""
) -> bytes:
    """The bytes a leaf hashes (format v1): ``[1, [event fields], [rating fields] | null]``.

    Fields in the fixed order of ``EVENT_FIELDS`` and ``RATING_FIELDS``; times as ISO
    8601 UTC; a decision event's leaf also covers its rating row. ``prefix`` names the
    rating's columns in ``rating`` (``r_`` in the joined query rows).
    """
    ev = [_plain(event[k]) for k in EVENT_FIELDS]
    rt = None if rating is None else [_plain(rating[prefix + k]) for k in RATING_FIELDS]
    return _ENCODE([LEAF_FORMAT, ev, rt]).encode()


def _event_query(leaves: bool = False) -> sa.Select[Any]:
    """Events with the rating row a decision covers (``r_*`` columns).

    With ``leaves``, driven by the log: every leaf with its event (if it still exists).
    """
    rating_cols = [t.ratings.c[k].label(f"r_{k}") for k in RATING_FIELDS]
    # Not in the leaf (format v1 predates it): checked against the sealed evidence instead.
    rating_cols.append(t.ratings.c.client_id.label("r_client_id"))
    cols = [*[t.events.c[k] for k in EVENT_FIELDS], *rating_cols]
    with_rating = sa.and_(
        t.ratings.c.rating_id == t.events.c.rating_id, t.events.c.kind == "decision"
    )
    if not leaves:
        return sa.select(*cols).select_from(t.events.outerjoin(t.ratings, with_rating))
    leaf_cols = [
        t.log_leaves.c.leaf_index,
        t.log_leaves.c.leaf_hash,
        t.log_leaves.c.event_id.label("leaf_event"),
    ]
    joined = t.log_leaves.outerjoin(
        t.events, t.events.c.event_id == t.log_leaves.c.event_id
    ).outerjoin(t.ratings, with_rating)
    return sa.select(*cols, *leaf_cols).select_from(joined)


def _leaf_of(row: Mapping[Any, Any]) -> bytes:
    if row["kind"] != "decision":
        return merkle.leaf_hash(leaf_data(row, None))
    if row["r_rating_id"] is None:  # the rating row is gone: hash a marker that can never match
        return merkle.leaf_hash(b"missing rating")
    return merkle.leaf_hash(leaf_data(row, row, prefix="r_"))


def _check_client(row: Mapping[Any, Any], report: VerifyReport) -> None:
    """A decision's rating row must name the client its sealed evidence names."""
    if row["kind"] != "decision" or row["r_rating_id"] is None:
        return
    column = row["r_client_id"]
    if column is None and '"client_id"' not in row["evidence"]:
        return
    sealed = json.loads(row["evidence"]).get("client_id")
    if sealed != column:
        report.fail(
            f"rating {row['rating_id']}: client_id {column!r} differs from the sealed "
            f"decision's {sealed!r}"
        )


class _RawLeaves:
    """Leaf hashes from the rows of :func:`_event_query` as the driver returns them.

    The same bytes as :func:`leaf_data` of the rows SQLAlchemy would return, without
    its per-value result processing: times become aware UTC ISO 8601 (SQLite stores
    naive UTC text, PostgreSQL returns ``timestamptz`` in the session's zone), and
    booleans ``true``/``false`` (SQLite stores 0/1). Used by ``seal``; ``verify``
    recomputes every leaf through the processed rows, so the two must agree.
    """

    _cache: ClassVar[dict[str, _RawLeaves]] = {}

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        cols = [c.name for c in _event_query().selected_columns]
        self.ev_idx = [cols.index(k) for k in EVENT_FIELDS]
        self.rt_idx = [cols.index("r_" + k) for k in RATING_FIELDS]
        self.kind_idx = cols.index("kind")
        self.rid_idx = cols.index("r_rating_id")
        times = {"at", "r_served_at", "r_submitted_at", "r_received_at", "r_occurred_at"}
        bools = {"r_claims_ticket", "r_submitted_at_given"}
        # the leaf's fields are contiguous in the query: slices, then the few conversions
        assert self.ev_idx == list(range(self.ev_idx[0], self.ev_idx[-1] + 1))
        assert self.rt_idx == list(range(self.rt_idx[0], self.rt_idx[-1] + 1))
        self.ev_slice = slice(self.ev_idx[0], self.ev_idx[-1] + 1)
        self.rt_slice = slice(self.rt_idx[0], self.rt_idx[-1] + 1)
        self.ev_conv = [
            (n, conv)
            for n, i in enumerate(self.ev_idx)
            if (conv := self._conv(cols[i], times, bools)) is not None
        ]
        self.rt_conv = [
            (n, conv)
            for n, i in enumerate(self.rt_idx)
            if (conv := self._conv(cols[i], times, bools)) is not None
        ]

    @classmethod
    def of(cls, dialect: str) -> _RawLeaves:
        found = cls._cache.get(dialect)
        if found is None:
            found = cls._cache[dialect] = cls(dialect)
        return found

    def sql(self, query: sa.Select[Any], conn: Connection) -> str:
        # the block size is the one value bound in the query: render it inline
        return str(query.compile(conn, compile_kwargs={"literal_binds": True}))

    def _conv(self, name: str, times: set[str], bools: set[str]) -> Any:
        if name in times:
            return _sqlite_iso if self.dialect == "sqlite" else _aware_iso
        if name in bools:
            return _bool
        return None

    def leaf_hash(self, row: Sequence[Any]) -> bytes:
        ev = list(row[self.ev_slice])
        for n, conv in self.ev_conv:
            ev[n] = conv(ev[n])
        if row[self.kind_idx] != "decision":
            return merkle.leaf_hash(_ENCODE([LEAF_FORMAT, ev, None]).encode())
        if row[self.rid_idx] is None:
            return merkle.leaf_hash(b"missing rating")
        rt = list(row[self.rt_slice])
        for n, conv in self.rt_conv:
            rt[n] = conv(rt[n])
        return merkle.leaf_hash(_ENCODE([LEAF_FORMAT, ev, rt]).encode())


def _sqlite_iso(value: Any) -> Any:
    """SQLite's stored text of a UTC time -> what ``_plain`` makes of it once processed."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 26 and value[10] == " " and value[19] == ".":
        frac = value[20:]
        return f"{value[:10]}T{value[11:19]}{'' if frac == '000000' else '.' + frac}+00:00"
    return _aware_iso(UTC_TIME.process_result_value(value, _SQLITE))


def _aware_iso(value: Any) -> Any:
    if value is None:
        return None
    if value.__class__ is datetime and value.tzinfo is UTC:
        return value.isoformat()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC).isoformat()
    return value.astimezone(UTC).isoformat()


def _bool(value: Any) -> Any:
    return None if value is None else bool(value)


@dataclass(frozen=True)
class Head:
    size: int
    root: bytes
    sealed_at: datetime | None

    def checkpoint(self) -> str:
        return merkle.format_checkpoint(self.size, self.root)


class MerkleLog:
    """The sealed log of a :class:`SqlLedger`."""

    def __init__(self, ledger: SqlLedger, block: int = 5000) -> None:
        self.ledger = ledger
        self.block = block

    def head(self) -> Head:
        with translate_errors(), self.ledger.engine.connect() as conn:
            row = conn.execute(sa.select(t.log_head).where(t.log_head.c.id == 1)).mappings().first()
        if row is None:
            return Head(0, merkle.EMPTY_ROOT, None)
        return Head(int(row["size"]), bytes(row["root"]), row["sealed_at"])

    def seal(self, now: datetime, limit: int | None = None, *, above: int = 0) -> int:
        """Append every unsealed event to the log; returns how many were sealed.

        Runs in blocks of up to ``self.block`` events (a window of as many ids), one
        transaction each, the leaves of up to :data:`HASH_AHEAD` blocks hashed before
        the first of them is written (one block with a ``limit``). On PostgreSQL a
        second sealer that finds the head locked returns at once (the other one is
        doing the work). ``above``: only events with a greater id (a sealer that
        already sealed up to it, while a batch writes; a call without it finds what is
        still unsealed below).
        """
        # The lowest unsealed id and the highest id now: then windows of ``block`` ids,
        # each a range of the primary key (so no block re-reads what earlier ones saw,
        # whatever plan the database picks). An event committed late below a window
        # already sealed is found by the next call.
        ev = t.events.c
        with translate_errors(), self.ledger.engine.connect() as conn:
            # When there are as many events up to the highest sealed one as leaves (one
            # statement: one snapshot), every one of them is sealed, and the first
            # unsealed is found above it by the primary key; else (an event committed
            # late below it) by looking for events without a leaf.
            top = sa.select(sa.func.max(t.log_leaves.c.event_id)).scalar_subquery()
            size, sealed_top, below = conn.execute(
                sa.select(
                    sa.select(t.log_head.c.size).where(t.log_head.c.id == 1).scalar_subquery(),
                    top,
                    # all minus those above: a count of the whole table is the cheap one
                    sa.select(sa.func.count()).select_from(t.events).scalar_subquery()
                    - sa.select(sa.func.count())
                    .select_from(t.events)
                    .where(ev.event_id > top)
                    .scalar_subquery(),
                )
            ).one()
            if sealed_top is not None and size is not None and int(size) == int(below):
                first = conn.execute(
                    sa.select(sa.func.min(ev.event_id)).where(
                        ev.event_id > max(above, int(sealed_top))
                    )
                ).scalar()
            else:
                sealed = sa.select(t.log_leaves.c.event_id).where(
                    t.log_leaves.c.event_id == ev.event_id
                )
                first = conn.execute(
                    sa.select(sa.func.min(ev.event_id)).where(
                        ev.event_id > above, ~sa.exists(sealed)
                    )
                ).scalar()
            last = conn.execute(sa.select(sa.func.max(ev.event_id))).scalar()
        if first is None or last is None:
            return 0
        total = 0
        after = int(first) - 1
        while after < last and (limit is None or total < limit):
            # hashed before the head is taken (events and ratings never change), so the
            # write lock is held for the writes only: a sealer in another process hashes
            # while this one's other work holds the lock (see App.close). Up to
            # HASH_AHEAD blocks are hashed (a block read at a time, only the hashes
            # kept) before the first of them is written, so a sealer that waits for the
            # lock has done that much hashing while it waited, not after.
            blocks = HASH_AHEAD if limit is None else 1  # a limit: no more than it needs
            ahead = min(after + self.block * blocks, int(last))
            hashed: dict[int, bytes] = {}
            lo = after
            while lo < ahead:
                upto = min(lo + self.block, ahead)
                with translate_errors(), self.ledger.engine.begin() as conn:
                    hashed.update(self._leaf_hashes(conn, lo, upto))
                lo = upto
            while after < ahead and (limit is None or total < limit):
                upto = min(after + self.block, ahead)
                with translate_errors(), self.ledger.engine.begin() as conn:
                    n = self._seal_block(conn, now, after, upto, hashed)
                if n is None:  # another sealer holds the head: it does the work
                    return total
                total += n
                after = upto
        return total

    def _lock_head(self, conn: Connection, now: datetime) -> Mapping[Any, Any] | None:
        if self.ledger.dialect == "postgresql":
            conn.execute(
                sa.text(
                    "INSERT INTO log_head (id, size, root, frontier, sealed_at) "
                    "VALUES (1, 0, :root, '[0]', :now) ON CONFLICT (id) DO NOTHING"
                ),
                {"root": merkle.EMPTY_ROOT, "now": now},
            )
            q = sa.select(t.log_head).where(t.log_head.c.id == 1).with_for_update(skip_locked=True)
            return conn.execute(q).mappings().first()
        # SQLite: a write first takes the database's write lock for this transaction.
        res = conn.execute(t.log_head.update().where(t.log_head.c.id == 1).values(id=1))
        if res.rowcount == 0:
            conn.execute(
                t.log_head.insert(),
                {
                    "id": 1,
                    "size": 0,
                    "root": merkle.EMPTY_ROOT,
                    "frontier": "[0]",
                    "sealed_at": now,
                },
            )
        return conn.execute(sa.select(t.log_head).where(t.log_head.c.id == 1)).mappings().first()

    def _leaf_hashes(
        self, conn: Connection, after: int, upto: int, ids: Sequence[int] | None = None
    ) -> dict[int, bytes]:
        """The leaf hash of each unsealed event with an id in ``(after, upto]`` (of those
        in ``ids`` when given), by event id; ``conn`` is in a transaction."""
        sealed = sa.select(t.log_leaves.c.event_id).where(
            t.log_leaves.c.event_id == t.events.c.event_id
        )
        query = _event_query().where(
            ~sa.exists(sealed), t.events.c.event_id > after, t.events.c.event_id <= upto
        )
        if ids is not None:
            query = query.where(t.events.c.event_id.in_(ids))
        # The rows as the driver gives them (no SQLAlchemy result processing per value):
        # _RawLeaves turns them into exactly the bytes leaf_data makes of processed rows.
        raw = _RawLeaves.of(self.ledger.dialect)
        if self.ledger.dialect == "postgresql":  # (for the rest of the caller's transaction)
            # times come back in UTC (no conversion per value); and index probes, never a
            # hash of all ratings or leaves: a block costs its own size on any ledger
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            conn.exec_driver_sql("SET LOCAL enable_hashjoin = off")
            conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")
        # plain driver tuples (no result row object per event)
        rows = conn.exec_driver_sql(raw.sql(query, conn)).cursor.fetchall()
        return {int(row[0]): raw.leaf_hash(row) for row in rows}

    def _seal_block(
        self, conn: Connection, now: datetime, after: int, upto: int, hashed: dict[int, bytes]
    ) -> int | None:
        """Seal the unsealed events with ids in ``(after, upto]``, in id order, with the
        leaf hashes in ``hashed`` (any missing are made here); returns how many, or
        ``None`` when another sealer holds the log head."""
        head = self._lock_head(conn, now)
        if head is None:
            return None
        sealed = sa.select(t.log_leaves.c.event_id).where(
            t.log_leaves.c.event_id == t.events.c.event_id
        )
        # what is unsealed now (another sealer may have sealed some meanwhile, and an
        # event may have committed late into the window)
        ids = [
            int(i)
            for (i,) in conn.execute(
                sa.select(t.events.c.event_id)
                .where(~sa.exists(sealed), t.events.c.event_id > after, t.events.c.event_id <= upto)
                .order_by(t.events.c.event_id)
            )
        ]
        if not ids:
            return 0
        missing = [i for i in ids if i not in hashed]
        if missing:
            hashed = {**hashed, **self._leaf_hashes(conn, after, upto, missing)}
        hashes = [hashed[i] for i in ids]
        frontier = merkle.CompactRange.from_list(json.loads(head["frontier"]))
        start = frontier.size
        frontier.extend(hashes)
        leaves = [(start + n, i, h) for n, (i, h) in enumerate(zip(ids, hashes, strict=True))]
        # one COPY stream on PostgreSQL, one executemany on SQLite (as the ledger loads)
        self.ledger.load_rows(conn, t.log_leaves, ("leaf_index", "event_id", "leaf_hash"), leaves)
        conn.execute(
            t.log_head.update()
            .where(t.log_head.c.id == 1)
            .values(
                size=frontier.size,
                root=frontier.root(),
                frontier=json.dumps(frontier.to_list()),
                sealed_at=now,
            )
        )
        return len(ids)

    @contextmanager
    def counted_at(
        self, size: int, start: datetime, end: datetime
    ) -> Iterator[tuple[dict[str, int], Iterator[tuple[int, str, float]]]]:
        """The ratings that counted as the log stood at ``size`` leaves, by ``occurred_at``
        in ``[start, end)``: ratings whose last sealed status event (leaf < ``size``)
        is ``accepted``. Yields ``(ratings per window, rows)``; rows are ``(rating_id,
        window_id, risk)`` in ascending id, streamed while the block is open."""
        rows_q, counts_q = _population(size, start, end)
        with translate_errors(), self.ledger.engine.connect() as conn:
            counts = {str(w): int(n) for w, n in conn.execute(counts_q)}

            def rows() -> Iterator[tuple[int, str, float]]:
                result = conn.execution_options(yield_per=20000).execute(rows_q)
                for rid, win, risk in result:
                    yield int(rid), str(win), min(1.0, max(0.0, float(risk or 0.0)))

            yield counts, rows()

    def checkpoint(self, now: datetime, actor: str = "operator") -> Head:
        """Seal everything, record the head as a checkpoint and return it.

        The checkpoint row is recorded with a ``ledger.checkpoint`` event (size and
        root), sealed at once as the next leaf, so verify tells a deleted checkpoint row.
        """
        self.seal(now)
        head = self.head()
        try:
            with self.ledger.unit_of_work() as uow:
                conn = uow.connection
                exists = conn.execute(
                    sa.select(t.checkpoints.c.size).where(t.checkpoints.c.size == head.size)
                ).first()
                if exists is None:
                    conn.execute(
                        t.checkpoints.insert(), {"size": head.size, "root": head.root, "at": now}
                    )
                    uow.append(
                        Event(
                            kind=Kind.LEDGER_CHECKPOINT,
                            actor=actor,
                            at=now,
                            subject=f"checkpoint:{head.size}",
                            evidence={"size": head.size, "root": head.root.hex()},
                        )
                    )
        except AlreadyExists:  # a concurrent checkpoint of the same head recorded it
            pass
        self.seal(now)
        return head

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """RFC 9162 proof that the current log extends its first ``old_size`` leaves."""
        leaves = list(self._stored_leaves())
        return merkle.consistency_proof([h for _, _, h in leaves], old_size)

    def _stored_leaves(self) -> Iterator[tuple[int, int, bytes]]:
        with translate_errors(), self.ledger.engine.connect() as conn:
            q = sa.select(
                t.log_leaves.c.leaf_index, t.log_leaves.c.event_id, t.log_leaves.c.leaf_hash
            ).order_by(t.log_leaves.c.leaf_index)
            for idx, eid, h in conn.execution_options(yield_per=20000).execute(q):
                yield int(idx), int(eid), bytes(h)

    def verify(
        self,
        now: datetime,
        checkpoint: str | None = None,
        external: Sequence[tuple[str, str]] = (),
    ) -> VerifyReport:
        """Check the ledger against its log; see :class:`VerifyReport`.

        ``checkpoint``: one checkpoint printed earlier ("the given checkpoint");
        ``external``: ``(label, checkpoint text)`` pairs kept outside the database (a
        checkpoint file's lines), each checked the same way and named by its label.
        ``ValueError`` for a malformed checkpoint.
        """
        report = VerifyReport()
        wants: dict[int, list[tuple[bytes, str]]] = {}
        given = [("the given checkpoint", checkpoint)] if checkpoint else []
        for label, text in [*given, *external]:
            size, root = merkle.parse_checkpoint(text)
            wants.setdefault(size, []).append((root, label))
        head = self.head()
        stored = merkle.CompactRange()
        recomputed = merkle.CompactRange()
        with translate_errors(), self.ledger.engine.connect() as conn:
            saved = {
                int(s): bytes(r)
                for s, r in conn.execute(sa.select(t.checkpoints.c.size, t.checkpoints.c.root))
            }
            recorded = self._check_recorded_checkpoints(conn, report, saved)
            if 0 in wants:
                for root, label in wants[0]:
                    if root != merkle.EMPTY_ROOT:
                        report.fail(f"{label} of size 0 has a wrong root")
            q = _event_query(leaves=True).order_by(t.log_leaves.c.leaf_index)
            expected_index = 0
            for row in conn.execution_options(yield_per=20000).execute(q).mappings():
                idx = int(row["leaf_index"])
                if idx != expected_index:
                    report.fail(f"log leaf {expected_index} is missing (next leaf is {idx})")
                    expected_index = idx
                stored_hash = bytes(row["leaf_hash"])
                if row["event_id"] is None:
                    report.fail(f"event {row['leaf_event']} (leaf {idx}) was deleted")
                    fresh = b"\x00" * 32
                else:
                    fresh = _leaf_of(row)
                    _check_client(row, report)
                    if fresh != stored_hash:
                        what = (
                            f"rating {row['rating_id']} or its "
                            if row["kind"] == "decision"
                            else ""
                        )
                        report.fail(
                            f"{what}event {row['event_id']} (leaf {idx}) differs from what was sealed"
                        )
                stored.append(stored_hash)
                recomputed.append(fresh)
                expected_index += 1
                size = stored.size
                if size in saved and recomputed.root() != saved[size]:
                    report.fail(f"checkpoint at size {size} no longer matches the ledger")
                if size in recorded and recomputed.root() != recorded[size][0]:
                    report.fail(
                        f"checkpoint at size {size} recorded by event {recorded[size][1]} "
                        "no longer matches the ledger"
                    )
                for root, label in wants.get(size, ()):
                    if recomputed.root() != root:
                        report.fail(f"the ledger does not extend {label} (size {size})")
            for size, roots in sorted(wants.items()):
                if size > stored.size:
                    for _, label in roots:
                        report.fail(
                            f"{label} has size {size} but the log holds only {stored.size} leaves"
                        )
            if stored.size != head.size or stored.root() != head.root:
                report.fail(
                    f"log head (size {head.size}) disagrees with its leaves (size {stored.size})"
                )
            self._check_unsealed(conn, report)
            self._check_risk(conn, report)
            self._check_status(conn, report)
            self._check_ratings_have_decisions(conn, report)
            self._check_rule_sets(conn, report)
            self._check_config_tables(conn, report)
            for rid in score_column_mismatches(conn):
                report.fail(f"rating {rid}: its score columns differ from its sealed scores")
        report.size = recomputed.size
        report.root = recomputed.root()
        return report

    def _check_recorded_checkpoints(
        self, conn: Connection, report: VerifyReport, saved: Mapping[int, bytes]
    ) -> dict[int, tuple[bytes, int]]:
        """Every ``ledger.checkpoint`` event's checkpoint row is still stored, unchanged.

        Returns size -> (root, event id) of the recorded checkpoints, which are checked
        against the recomputed log as well."""
        out: dict[int, tuple[bytes, int]] = {}
        rows = conn.execute(
            sa.select(t.events.c.event_id, t.events.c.evidence)
            .where(t.events.c.kind == Kind.LEDGER_CHECKPOINT.value)
            .order_by(t.events.c.event_id)
        ).all()
        for eid, evidence in rows:
            doc = json.loads(evidence)
            try:
                size, root = int(doc["size"]), bytes.fromhex(doc["root"])
            except (KeyError, TypeError, ValueError):
                report.fail(f"event {eid} (ledger.checkpoint) does not name a size and root")
                continue
            out[size] = (root, int(eid))
            if size not in saved:
                report.fail(f"checkpoint at size {size} recorded by event {eid} is missing")
            elif saved[size] != root:
                report.fail(f"checkpoint at size {size} differs from what event {eid} recorded")
        return out

    def _check_unsealed(self, conn: Connection, report: VerifyReport) -> None:
        """List the events not in the log, whatever their age: a warning (``--strict``
        makes it a failure)."""
        sealed = sa.select(t.log_leaves.c.event_id).where(
            t.log_leaves.c.event_id == t.events.c.event_id
        )
        unsealed = ~sa.exists(sealed)
        report.unsealed = int(
            conn.execute(
                sa.select(sa.func.count()).select_from(t.events).where(unsealed)
            ).scalar_one()
        )
        if not report.unsealed:
            return
        rows = conn.execute(
            sa.select(t.events.c.event_id, t.events.c.kind, t.events.c.actor, t.events.c.at)
            .where(unsealed)
            .order_by(t.events.c.event_id)
            .limit(UNSEALED_SHOWN)
        ).all()
        report.unsealed_events = [(int(e), str(k), str(a), at) for e, k, a, at in rows]
        shown = "; ".join(f"{e} {k} by {a} at {_plain(at)}" for e, k, a, at in rows)
        more = f" (first {len(rows)})" if report.unsealed > len(rows) else ""
        report.warn(
            f"{report.unsealed} event(s) not yet in the log: they carry no tamper evidence "
            f"until sealed (`integrity ledger seal`), and one inserted behind the engine's "
            f"back looks the same. Unsealed{more}: {shown}"
        )

    def _check_rule_sets(self, conn: Connection, report: VerifyReport) -> None:
        """Each stored rule set hashes to its id and to what its activation sealed; every
        rule set a rating or an event cites is stored."""
        stored = {
            str(rid): str(text)
            for rid, text in conn.execute(sa.select(t.rule_sets.c.rule_set_id, t.rule_sets.c.text))
        }
        for rid, text in sorted(stored.items()):
            actual = rule_set_id(text)
            if actual != rid:
                report.fail(
                    f"rule set {rid}: its stored text hashes to {actual}, not to its id "
                    "(the text was edited after it was stored)"
                )
        activations = conn.execute(
            sa.select(t.events.c.event_id, t.events.c.rule_set_id, t.events.c.evidence)
            .where(t.events.c.kind == Kind.RULE_SET_ACTIVATED.value)
            .order_by(t.events.c.event_id)
        ).all()
        for eid, rid, evidence in activations:
            want = json.loads(evidence).get("sha256")
            if rid not in stored:
                continue  # reported below as a missing rule set
            if want is not None and hashlib.sha256(stored[rid].encode()).hexdigest() != want:
                report.fail(f"rule set {rid}: its text differs from what event {eid} sealed")
        for table, key in ((t.events, t.events.c.event_id), (t.ratings, t.ratings.c.rating_id)):
            cited = table.c.rule_set_id
            missing = sa.and_(
                cited.is_not(None),
                ~sa.exists(
                    sa.select(t.rule_sets.c.rule_set_id).where(t.rule_sets.c.rule_set_id == cited)
                ),
            )
            n = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(missing)
            ).scalar_one()
            if not n:
                continue
            first = conn.execute(sa.select(key, cited).where(missing).order_by(key).limit(5)).all()
            what = "event" if table is t.events else "rating"
            shown = ", ".join(f"{what} {i} cites {r}" for i, r in first)
            report.fail(f"{n} {what}(s) cite a rule set that is not stored ({shown})")

    def _check_config_tables(self, conn: Connection, report: VerifyReport) -> None:
        """Each configuration table's content matches its latest ``config.sealed`` event;
        a partitioned table's, each partition's (every one with rows or a seal)."""
        present = set(sa.inspect(conn).get_table_names())
        seals = self.ledger.latest_config_seals(conn)
        for name in self.ledger.config_tables:
            if name not in present:
                continue
            problems = self.ledger.config_problems(conn, name)
            for problem in problems:
                report.fail(problem)
            if problems:
                continue
            column = self.ledger.config_tables.partition_column(name)
            seal = seals.get(name)
            if column is not None and not self.ledger.sealed_whole(conn, name):
                self._warn_partition_columns(conn, name, report)
            elif seal is not None:
                cols = set(seal[1].get("columns") or ())
                new_cols = [c for c in current_columns(name) if c not in cols]
                if new_cols:
                    report.warn(
                        f"table {name}: column(s) {', '.join(new_cols)} are not covered by its "
                        f"last seal (event {seal[0]}); `integrity init` seals them"
                    )

    def _warn_partition_columns(self, conn: Connection, name: str, report: VerifyReport) -> None:
        """Partitions whose latest seal leaves out a column the table has now."""
        now_cols = current_columns(name)
        short = [
            (key, eid, [c for c in now_cols if c not in set(doc.get("columns") or ())])
            for key, (eid, doc) in self.ledger.partition_seals(conn, name).items()
        ]
        short = [s for s in short if s[2]]
        if short:
            key, eid, cols = min(short)
            report.warn(
                f"table {name}: column(s) {', '.join(cols)} are not covered by the last seal "
                f"of {len(short)} partition(s) (e.g. {key}, event {eid}); `integrity init` "
                "seals them"
            )

    def _check_status(self, conn: Connection, report: VerifyReport) -> None:
        last = (
            sa.select(t.events.c.rating_id, sa.func.max(t.events.c.event_id).label("eid"))
            .where(t.events.c.status.is_not(None), t.events.c.rating_id.is_not(None))
            .group_by(t.events.c.rating_id)
            .subquery()
        )
        e = t.events.alias("e")
        # The status row's ';'-joined reasons as the event's canonical JSON list (reason
        # codes are plain identifiers: no quotes, backslashes or ';' to escape).
        st_reasons = t.rating_status.c.reasons
        reasons_json = sa.case(
            (st_reasons == "", sa.literal("[]")),
            else_=sa.literal('["').concat(sa.func.replace(st_reasons, ";", '","')).concat('"]'),
        )
        q = (
            sa.select(
                t.rating_status.c.rating_id,
                t.rating_status.c.status,
                t.rating_status.c.reasons,
                t.rating_status.c.last_event_id,
                e.c.status.label("ev_status"),
                e.c.reasons.label("ev_reasons"),
                e.c.event_id,
            )
            .select_from(
                t.rating_status.outerjoin(
                    last, last.c.rating_id == t.rating_status.c.rating_id
                ).outerjoin(e, e.c.event_id == last.c.eid)
            )
            .where(
                sa.or_(
                    e.c.event_id.is_(None),
                    e.c.status != t.rating_status.c.status,
                    e.c.event_id != t.rating_status.c.last_event_id,
                    e.c.reasons != reasons_json,
                )
            )
            .limit(20)
        )
        for row in conn.execute(q):
            ev_reasons = ";".join(json.loads(row.ev_reasons)) if row.ev_reasons else ""
            report.fail(
                f"rating {row.rating_id}: status row says {row.status} [{row.reasons}] "
                f"(event {row.last_event_id}) but its events say {row.ev_status} "
                f"[{ev_reasons}] (event {row.event_id})"
            )
        orphan = conn.execute(
            sa.select(sa.func.count())
            .select_from(
                t.ratings.outerjoin(
                    t.rating_status, t.rating_status.c.rating_id == t.ratings.c.rating_id
                )
            )
            .where(t.rating_status.c.rating_id.is_(None))
        ).scalar_one()
        if orphan:
            report.fail(f"{orphan} rating(s) have no status row")
        self._check_ratings_exist(conn, report)

    def _check_ratings_exist(self, conn: Connection, report: VerifyReport) -> None:
        """Every event and status row that names a rating names one that is stored (the
        schema has no foreign keys to ``ratings``, see ``tables.events``)."""
        r = t.ratings.c
        for table, key, what in (
            (t.events, t.events.c.event_id, "event"),
            (t.rating_status, t.rating_status.c.rating_id, "status row"),
        ):
            stored = sa.exists().where(r.rating_id == table.c.rating_id)
            rows = conn.execute(
                sa.select(key, table.c.rating_id)
                .where(table.c.rating_id.is_not(None), ~stored)
                .order_by(key)
                .limit(20)
            ).all()
            for ident, rid in rows:
                name = f"{what} {ident} names" if what == "event" else "a status row names"
                report.fail(f"{name} rating {rid}, which is not stored")

    def _check_risk(self, conn: Connection, report: VerifyReport) -> None:
        """Each scoring run's rows (its ``risk_blocks`` row, or on ledgers from before
        blocks its ``risk_scores`` rows) match its sealed digest; each rating's risk is
        its latest row (0 if none)."""
        import numpy as np

        runs = conn.execute(
            sa.select(t.events.c.event_id, t.events.c.evidence)
            .where(t.events.c.kind == "risk.scored")
            .order_by(t.events.c.event_id)
        ).all()
        blocks = {
            int(eid): data
            for eid, data in conn.execute(sa.select(t.risk_blocks.c.event_id, t.risk_blocks.c.data))
        }
        latest_ids: list[np.ndarray] = []
        latest_vals: list[np.ndarray] = []
        for eid, evidence in runs:
            want = json.loads(evidence)
            data = blocks.pop(int(eid), None)
            if data is not None:
                try:
                    ids, vals = decode_risks(data)
                except ValueError as err:
                    report.fail(f"risk scores of event {eid} cannot be read: {err}")
                    continue
                digest = risk_digest_columns(ids, vals)
            else:
                rows = conn.execute(
                    sa.select(t.risk_scores.c.rating_id, t.risk_scores.c.risk)
                    .where(t.risk_scores.c.event_id == eid)
                    .order_by(t.risk_scores.c.rating_id)
                ).all()
                ids = np.array([int(r) for r, _ in rows], dtype=np.int64)
                vals = np.array([float(v) for _, v in rows], dtype=float)
                digest = risk_digest(list(zip(ids.tolist(), vals.tolist(), strict=True)))
            if len(ids) != want.get("ratings") or digest != want.get("sha256"):
                report.fail(f"risk scores of event {eid} differ from what the event recorded")
            latest_ids.append(ids)
            latest_vals.append(vals)
        for eid in sorted(blocks):
            report.fail(f"risk scores of event {eid} belong to no risk.scored event")
        # the latest value per rating: later runs' rows after earlier ones, the last wins
        if latest_ids:
            all_ids = np.concatenate(latest_ids)
            all_vals = np.concatenate(latest_vals)
            order = np.argsort(all_ids, kind="stable")
            all_ids, all_vals = all_ids[order], all_vals[order]
            last = np.r_[all_ids[1:] != all_ids[:-1], True] if len(all_ids) else all_ids > 0
            s_ids, s_vals = all_ids[last], all_vals[last]
        else:
            s_ids, s_vals = np.zeros(0, dtype=np.int64), np.zeros(0)
        st = t.rating_status.c
        found = 0
        after = None
        while found < 20:  # the status rows in slices of the id range, as arrays
            q = sa.select(st.rating_id, st.risk).order_by(st.rating_id).limit(500_000)
            if after is not None:
                q = q.where(st.rating_id > after)
            rows = conn.execute(q).all()
            if not rows:
                break
            ids = np.array([int(r) for r, _ in rows], dtype=np.int64)
            risk = np.array([float(v or 0.0) for _, v in rows], dtype=float)
            after = int(ids[-1])
            pos = np.searchsorted(s_ids, ids)
            hit = pos < len(s_ids)
            hit[hit] = s_ids[pos[hit]] == ids[hit]
            scored = np.zeros(len(ids))
            scored[hit] = s_vals[pos[hit]]
            for i in np.flatnonzero(np.abs(risk - scored) > 1e-6)[: 20 - found]:
                found += 1
                report.fail(
                    f"rating {int(ids[i])}: risk {risk[i]:.6f} in the status row, but its "
                    f"scoring events say {scored[i]:.6f}"
                )

    def _check_ratings_have_decisions(self, conn: Connection, report: VerifyReport) -> None:
        dec = sa.select(t.events.c.event_id).where(
            t.events.c.rating_id == t.ratings.c.rating_id, t.events.c.kind == "decision"
        )
        rows = (
            conn.execute(sa.select(t.ratings.c.rating_id).where(~sa.exists(dec)).limit(20))
            .scalars()
            .all()
        )
        for rid in rows:
            report.fail(f"rating {rid} has no decision event (inserted outside the hook?)")


def _population(size: int, start: datetime, end: datetime) -> tuple[sa.Select[Any], Any]:
    """Ratings of the period whose last sealed status event (leaf < size) is ``accepted``."""
    ev, leaves, r = t.events, t.log_leaves, t.ratings
    last = (
        sa.select(ev.c.rating_id.label("rid"), sa.func.max(ev.c.event_id).label("eid"))
        .select_from(
            ev.join(leaves, leaves.c.event_id == ev.c.event_id).join(
                r, r.c.rating_id == ev.c.rating_id
            )
        )
        .where(
            leaves.c.leaf_index < size,
            ev.c.status.is_not(None),
            r.c.occurred_at >= start,
            r.c.occurred_at < end,
        )
        .group_by(ev.c.rating_id)
        .subquery("last_status")
    )
    st = ev.alias("st")
    joined = (
        r.join(last, last.c.rid == r.c.rating_id)
        .join(st, st.c.event_id == last.c.eid)
        .outerjoin(t.rating_status, t.rating_status.c.rating_id == r.c.rating_id)
    )
    rows = (
        sa.select(
            r.c.rating_id,
            r.c.window_id,
            sa.func.coalesce(t.rating_status.c.risk, 0.0).label("risk"),
        )
        .select_from(joined)
        .where(st.c.status == Status.ACCEPTED.value)
        .order_by(r.c.rating_id)
    )
    counts = (
        sa.select(r.c.window_id, sa.func.count())
        .select_from(joined)
        .where(st.c.status == Status.ACCEPTED.value)
        .group_by(r.c.window_id)
    )
    return rows, counts


# -- sealing in a forked process (integrity.forking) ----------------------------------------

_adopted: MerkleLog | None = None  # a forked child's log
_inherited: list[Any] = []  # the parent's connections, kept (never closed) in the child
_sealed_upto = 0  # the highest event id a forked child knows it sealed up to


def adopt(log: MerkleLog) -> None:
    """In a forked child (a :func:`~integrity.forking.fork_pool` initializer): seal with
    ``log`` on connections of its own. The parent's stay the parent's: kept referenced
    here, never closed (closing an inherited SQLite handle would drop this process's
    own locks on the file)."""
    global _adopted
    _inherited.append(log.ledger.engine.pool)
    log.ledger.engine.dispose(close=False)
    _adopted = log


def seal_adopted(now: datetime, *, beside: bool = False) -> int:
    """In a forked child: seal what is unsealed (:meth:`MerkleLog.seal`); how many.

    ``beside``: while a batch is still writing, seal what it committed since the last
    such call (events above the highest id seen before it; one committed late below
    that is left to the next full seal, which the batch's close makes)."""
    global _sealed_upto
    assert _adopted is not None, "the forked process was started without its log"
    if not beside:
        return _adopted.seal(now)
    last = _adopted.ledger.last_event_id() or 0
    n = _adopted.seal(now, above=_sealed_upto)
    _sealed_upto = max(_sealed_upto, last)
    return n


@dataclass
class VerifyReport:
    """``ok`` when nothing failed; ``problems`` say where; ``warnings`` need a look.

    Unsealed events are a warning, not a problem (the sealer runs after the fact);
    ``strict_ok`` also requires that there be none.
    """

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    size: int = 0
    root: bytes = merkle.EMPTY_ROOT
    unsealed: int = 0
    #: The first unsealed events: (event id, kind, actor, time).
    unsealed_events: list[tuple[int, str, str, datetime]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def strict_ok(self) -> bool:
        return self.ok and self.unsealed == 0

    def fail(self, msg: str) -> None:
        if len(self.problems) < 1000:
            self.problems.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
