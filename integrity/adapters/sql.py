"""The score ledger on SQL (SQLite by default, PostgreSQL by URL): one code path.

Every write is one transaction: a rating row, its decision event and its status row
go in together or not at all. Driver errors become ``BackendUnavailable``; a lost
race (two workers, one ticket) becomes a clean ``duplicate_ticket`` decision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg  # the PostgreSQL driver: bulk loads use its COPY directly
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

from integrity.adapters import tables as t
from integrity.catalogue import KINDS, REASONS, Kind, Reason
from integrity.errors import AlreadyExists, Conflict, NotFound
from integrity.model import (
    Decision,
    Event,
    Kiosk,
    Rating,
    RatingState,
    Status,
    StoredRating,
    VenueRegistry,
)
from integrity.ports import LIMITED_BITS, Lookup, Pending, RatingQuery, ScanSpec
from integrity.sqlkit import canonical_json, translate_errors


def _limited_bits(reasons: Any) -> Any:
    """SQL: the sum of :data:`~integrity.ports.LIMITED_BITS` of the codes in a
    ';'-joined reasons column (a code matches whole, never as a prefix of another)."""
    total: Any = sa.literal(0)
    for code, bit in LIMITED_BITS.items():
        whole = sa.or_(
            reasons == code,
            reasons.startswith(code + ";", autoescape=True),
            reasons.endswith(";" + code, autoescape=True),
            reasons.contains(";" + code + ";", autoescape=True),
        )
        total = total + sa.case((whole, bit), else_=0)
    return total


def make_engine(url: str) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql://...`` with the ledger's settings.

    SQLite runs in WAL mode with a busy timeout, so readers never block the writer.
    A bare ``postgresql://`` URL uses psycopg 3.
    """
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa_event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # Checkpoint the WAL every ~40 MB instead of ~4 MB: each checkpoint syncs, and
            # ledger commits touch a dozen index pages, so the default checkpoints often.
            cur.execute("PRAGMA wal_autocheckpoint=10000")
            # Index pages of hashed keys are touched at random: keep them cached (64 MB).
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()

        return engine
    # No pre-ping: it costs a round trip per checkout on the hot path. A connection
    # that died with its server fails one request (BackendUnavailable, HTTP 503) and
    # SQLAlchemy then discards the whole pool, so the next request reconnects.
    return sa.create_engine(url, pool_size=10, max_overflow=20, connect_args={"connect_timeout": 5})


def rating_row(r: Rating, rule_set_id: str, claims_ticket: bool) -> dict[str, Any]:
    return {
        "fingerprint": r.fingerprint,
        "ticket_id": r.ticket_id,
        "claims_ticket": claims_ticket,
        "window_id": r.window_id,
        "staff_id": r.staff_id,
        "service_type": r.service_type,
        "channel": r.channel,
        "served_at": r.served_at,
        "submitted_at": r.submitted_at,
        "submitted_at_given": r.submitted_at_given,
        "received_at": r.received_at,
        "occurred_at": r.occurred_at,
        "scores": canonical_json(dict(r.scores)),
        "composite": r.composite,
        "comment": r.comment,
        "ip_hash": r.ip_hash,
        "prefix_hash": r.prefix_hash,
        "device_hash": r.device_hash,
        "rule_set_id": rule_set_id,
    }


_RATING_COLS = [c.name for c in t.ratings.columns if c.name != "rating_id"]
_EVENT_COLS = ["subject", "kind", "actor", "status", "reasons", "rule_set_id", "evidence", "at"]
_STATUS_COLS = ["status", "reasons", "risk", "version"]


def _pg_record_statement() -> sa.Insert:
    """INSERT rating ON CONFLICT DO NOTHING, its decision event and status row in ONE
    statement (data-modifying CTEs): one round trip, built once, bound per rating."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    def bind(prefix: str, table: sa.Table, col: str) -> sa.BindParameter[Any]:
        return sa.bindparam(f"{prefix}_{col}", type_=table.c[col].type)

    r = (
        pg_insert(t.ratings)
        .values({c: bind("r", t.ratings, c) for c in _RATING_COLS})
        .on_conflict_do_nothing()
        .returning(t.ratings.c.rating_id)
        .cte("r")
    )
    e = (
        t.events.insert()
        .from_select(
            ["rating_id", *_EVENT_COLS],
            sa.select(
                r.c.rating_id,
                *[sa.cast(bind("e", t.events, c), t.events.c[c].type) for c in _EVENT_COLS],
            ),
        )
        .returning(t.events.c.event_id, t.events.c.rating_id)
        .cte("e")
    )
    return (
        t.rating_status.insert()
        .from_select(
            ["rating_id", "last_event_id", *_STATUS_COLS],
            sa.select(
                e.c.rating_id,
                e.c.event_id,
                *[
                    sa.cast(bind("s", t.rating_status, c), t.rating_status.c[c].type)
                    for c in _STATUS_COLS
                ],
            ),
        )
        .returning(t.rating_status.c.rating_id)
    )


def _sqlite_record_statement() -> sa.Insert:
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(t.ratings).on_conflict_do_nothing().returning(t.ratings.c.rating_id)


_PG_RECORD = _pg_record_statement()
_SQLITE_RECORD = _sqlite_record_statement()
_INSERT_EVENT = t.events.insert().returning(t.events.c.event_id)


def risk_value(x: float) -> float:
    """Risk as stored: clipped to [0, 1], 6 decimals (so digests are reproducible)."""
    return round(min(1.0, max(0.0, float(x))), 6)


def risk_digest(rows: Sequence[tuple[int, float]]) -> str:
    """SHA-256 of a scoring run's ``(rating_id, risk)`` rows in rating order."""
    blob = "\n".join(f"{rid}:{risk:.6f}" for rid, risk in sorted(rows))
    return hashlib.sha256(blob.encode()).hexdigest()


def _decision_event(p: Pending, actor: str) -> dict[str, Any]:
    """The decision event's columns (without ``rating_id``)."""
    if any(r not in REASONS for r in p.reasons):
        raise ValueError(f"reasons not in integrity.catalogue: {list(p.reasons)}")
    return {
        "subject": None,
        "kind": Kind.DECISION.value,
        "actor": actor,
        "status": p.status.value,
        "reasons": canonical_json(list(p.reasons)),
        "rule_set_id": p.rule_set_id,
        "evidence": canonical_json(dict(p.evidence)),
        "at": p.rating.received_at,
    }


def _status_row(p: Pending) -> dict[str, Any]:
    """The status row's columns (without ``rating_id`` and ``last_event_id``)."""
    return {"status": p.status.value, "reasons": ";".join(p.reasons), "risk": 0.0, "version": 1}


def _decision_from(rating_id: int, row: Mapping[Any, Any], replayed: bool) -> Decision:
    return Decision(
        rating_id=rating_id,
        status=Status(row["status"]),
        reasons=tuple(json.loads(row["reasons"])),
        rule_set_id=row["rule_set_id"] or "",
        replayed=replayed,
    )


class SqlLedger:
    """Append-only ledger of ratings and events on one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.written = False  # set by every committed write: the log has events to seal
        # Single-statement reads need no transaction: on PostgreSQL that saves the
        # BEGIN/ROLLBACK round trips.
        self.reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    # -- reads ---------------------------------------------------------------------------

    def lookup(self, fingerprint: str, ticket_id: str) -> Lookup:
        """One query: an identical earlier submission, or another rating on the ticket."""
        with translate_errors(), self.reader.connect() as conn:
            return self._lookup(conn, fingerprint, ticket_id)

    def _lookup(self, conn: Connection, fingerprint: str, ticket_id: str) -> Lookup:
        rows = conn.execute(
            sa.select(t.ratings.c.rating_id, t.ratings.c.fingerprint).where(
                sa.or_(
                    t.ratings.c.fingerprint == fingerprint,
                    sa.and_(
                        t.ratings.c.ticket_id == ticket_id, t.ratings.c.claims_ticket.is_(True)
                    ),
                )
            )
        ).all()
        for rid, fp in rows:
            if fp == fingerprint:
                return Lookup(self._first_decision(conn, rid, replayed=True), True)
        return Lookup(None, bool(rows))

    def lookup_many(self, ratings: Sequence[Rating]) -> list[Lookup]:
        """``lookup`` for many ratings with two queries."""
        fps = [r.fingerprint for r in ratings]
        tickets = list({r.ticket_id for r in ratings})
        with translate_errors(), self.engine.connect() as conn:
            known: dict[str, int] = {}
            for part in _chunks(fps, 900):
                rows = conn.execute(
                    sa.select(t.ratings.c.fingerprint, t.ratings.c.rating_id).where(
                        t.ratings.c.fingerprint.in_(part)
                    )
                )
                known.update({fp: rid for fp, rid in rows})
            taken: set[str] = set()
            for part in _chunks(tickets, 900):
                tickets_rows = conn.execute(
                    sa.select(t.ratings.c.ticket_id).where(
                        t.ratings.c.ticket_id.in_(part), t.ratings.c.claims_ticket.is_(True)
                    )
                )
                taken.update(str(tid) for tid in tickets_rows.scalars())
            out = []
            for r in ratings:
                rid = known.get(r.fingerprint)
                existing = (
                    self._first_decision(conn, rid, replayed=True) if rid is not None else None
                )
                out.append(Lookup(existing, existing is not None or r.ticket_id in taken))
            return out

    def _first_decision(self, conn: Connection, rating_id: int, replayed: bool) -> Decision:
        row = (
            conn.execute(
                sa.select(t.events.c.status, t.events.c.reasons, t.events.c.rule_set_id)
                .where(t.events.c.rating_id == rating_id, t.events.c.kind == "decision")
                .order_by(t.events.c.event_id)
                .limit(1)
            )
            .mappings()
            .one()
        )
        return _decision_from(rating_id, row, replayed)

    def current(self, rating_id: int) -> tuple[Status, int]:
        """Current status and version of a rating (``NotFound`` if none)."""
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.rating_status.c.status, t.rating_status.c.version).where(
                    t.rating_status.c.rating_id == rating_id
                )
            ).first()
        if row is None:
            raise NotFound(f"no rating {rating_id}")
        return Status(row.status), int(row.version)

    def rating(self, rating_id: int) -> StoredRating:
        """The stored rating with its current status (``NotFound`` if none)."""
        found = self.find_ratings(RatingQuery(ids=[rating_id]))
        if not found:
            raise NotFound(f"no rating {rating_id}")
        return found[0]

    def find_ratings(self, query: RatingQuery) -> list[StoredRating]:
        """Stored ratings matching ``query`` (see :class:`~integrity.ports.RatingQuery`)."""
        r, s = t.ratings.c, t.rating_status.c
        conds: list[Any] = []
        if query.statuses:
            conds.append(s.status.in_([st.value for st in query.statuses]))
        if query.reason and query.reason.endswith("."):  # a family: "outlier." ...
            conds.append(
                sa.or_(
                    s.reasons.startswith(query.reason, autoescape=True),
                    s.reasons.contains(";" + query.reason, autoescape=True),
                )
            )
        elif query.reason:
            conds.append(
                sa.or_(
                    s.reasons == query.reason,
                    s.reasons.startswith(query.reason + ";", autoescape=True),
                    s.reasons.endswith(";" + query.reason, autoescape=True),
                    s.reasons.contains(";" + query.reason + ";", autoescape=True),
                )
            )
        if query.window_id is not None:
            conds.append(r.window_id == query.window_id)
        if query.staff_id is not None:
            conds.append(
                r.staff_id.is_(None) if query.staff_id == "" else r.staff_id == query.staff_id
            )
        if query.composite_below is not None:
            conds.append(r.composite < query.composite_below)
        for col, lo, hi in (
            (r.submitted_at, query.submitted_from, query.submitted_to),
            (r.occurred_at, query.occurred_from, query.occurred_to),
        ):
            if lo is not None:
                conds.append(col >= lo)
            if hi is not None:
                conds.append(col < hi)
        orders: dict[str, list[Any]] = {
            "rating_id": [r.rating_id],
            "risk": [s.risk.desc(), r.rating_id],
            "submitted_at": [r.submitted_at, r.rating_id],
        }
        order = orders[query.order]
        base = (
            sa.select(*_STORED_COLS)
            .select_from(t.ratings.join(t.rating_status, s.rating_id == r.rating_id))
            .where(*conds)
            .order_by(*order)
        )
        if query.limit is not None:
            base = base.limit(query.limit)
        out: list[StoredRating] = []
        with translate_errors(), self.engine.connect() as conn:
            if query.ids is None:
                out = [_stored(dict(row)) for row in conn.execute(base).mappings()]
            else:
                for part in _chunks(sorted({int(i) for i in query.ids}), 900):
                    q = base.where(r.rating_id.in_(part))
                    out.extend(_stored(dict(row)) for row in conn.execute(q).mappings())
                if len(query.ids) > 900:
                    out.sort(key=_SORT_KEYS[query.order])
                    if query.limit is not None:
                        out = out[: query.limit]
        return out

    def events(self, event_ids: Sequence[int]) -> dict[int, Event]:
        """Events by id (those that exist)."""
        out: dict[int, Event] = {}
        wanted = sorted({int(i) for i in event_ids})
        with translate_errors(), self.engine.connect() as conn:
            for part in _chunks(wanted, 900):
                for row in conn.execute(
                    sa.select(t.events).where(t.events.c.event_id.in_(part))
                ).mappings():
                    ev = _event_from_row(row)
                    out[int(row["event_id"])] = ev
        return out

    def count_events(self, kind: str, subjects: Sequence[str]) -> dict[str, int]:
        """How many events of ``kind`` each subject has (subjects without any: 0)."""
        out = dict.fromkeys(subjects, 0)
        with translate_errors(), self.engine.connect() as conn:
            for part in _chunks(sorted(set(subjects)), 900):
                q = (
                    sa.select(t.events.c.subject, sa.func.count())
                    .where(t.events.c.kind == kind, t.events.c.subject.in_(part))
                    .group_by(t.events.c.subject)
                )
                out.update({str(subj): int(n) for subj, n in conn.execute(q)})
        return out

    def has_tables(self, *names: str) -> bool:
        """Whether the schema has these tables (a package's migrations ran)."""
        with translate_errors():
            inspector = sa.inspect(self.engine)
            return all(inspector.has_table(n) for n in names)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads (no transaction kept open longer than the block)."""
        with translate_errors(), self.engine.connect() as conn:
            yield conn

    def scan(
        self, spec: ScanSpec, on_progress: Callable[[int], None] | None = None
    ) -> Iterator[Sequence[Any]]:
        """Rows of :data:`~integrity.ports.SCAN_COLUMNS` in slices, straight from the DBAPI
        cursor as plain tuples (no per-row SQLAlchemy processing); see ``ScanSpec``."""
        r, s = t.ratings.c, t.rating_status.c
        cols = [
            r.rating_id,
            r.window_id,
            r.staff_id,
            r.service_type,
            self._epoch(r.served_at).label("served_s"),
            self._epoch(r.submitted_at).label("submitted_s"),
            r.composite,
            sa.case((r.composite < spec.low_below, r.comment), else_=None).label("comment"),
            r.ip_hash,
            r.prefix_hash,
            r.device_hash,
            sa.case((s.status == Status.ACCEPTED.value, 1), else_=0).label("counted"),
            sa.case((s.reasons.like(f"%{Reason.DUPLICATE_TICKET.value}%"), 1), else_=0).label(
                "dup"
            ),
            sa.case(  # one LIKE for most rows; the bits only where a limit is named
                (s.reasons.like("%limit%"), _limited_bits(s.reasons)), else_=0
            ).label("limited"),
            s.risk,
        ]
        base = sa.select(*cols).select_from(
            t.ratings.join(t.rating_status, s.rating_id == r.rating_id)
        )
        with translate_errors(), self.engine.connect() as conn:
            queries = self._scan_slices(conn, base, spec)
        with translate_errors(), self.engine.connect() as conn:
            for q in queries:
                result = conn.execute(q)
                cur = result.cursor
                while cur is not None:
                    rows = cur.fetchmany(50_000)
                    if not rows:
                        break
                    if on_progress is not None:
                        on_progress(len(rows))
                    yield rows
                result.close()

    def _epoch(self, col: Any) -> Any:
        """Epoch seconds of a timestamp column, computed by the database."""
        if self.dialect == "postgresql":
            return sa.extract("epoch", col)
        return (sa.func.julianday(col) - 2440587.5) * 86400.0

    @staticmethod
    def _scan_slices(
        conn: Connection, base: sa.Select[Any], spec: ScanSpec
    ) -> list[sa.Select[Any]]:
        r = t.ratings.c
        if spec.since is None and spec.until is None:
            lo, hi = conn.execute(
                sa.select(sa.func.min(r.rating_id), sa.func.max(r.rating_id))
            ).one()
            if lo is None:
                return []
            return [
                base.where(r.rating_id >= a, r.rating_id < min(a + spec.chunk, int(hi) + 1))
                for a in range(int(lo), int(hi) + 1, spec.chunk)
            ]
        lo, hi = conn.execute(
            sa.select(sa.func.min(r.occurred_at), sa.func.max(r.occurred_at))
        ).one()
        if lo is None:
            return []
        start = _aware(lo)
        end = _aware(hi) + timedelta(seconds=1)
        if spec.since is not None:
            start = max(start, spec.since - timedelta(days=spec.context_days))
        if spec.until is not None:
            end = min(end, spec.until)
        out = []
        step = timedelta(days=spec.partition_days)
        cur = start
        while cur < end:
            nxt = min(end, cur + step)
            out.append(base.where(r.occurred_at >= cur, r.occurred_at < nxt))
            cur = nxt
        return out

    def last_event_id(self, kind: str) -> int | None:
        """Id of the newest event of ``kind`` (e.g. ``venues.loaded``), or ``None``."""
        with translate_errors(), self.reader.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.max(t.events.c.event_id)).where(t.events.c.kind == kind)
            ).scalar()
        return int(value) if value is not None else None

    def events_of(self, rating_id: int) -> list[Event]:
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.events)
                .where(t.events.c.rating_id == rating_id)
                .order_by(t.events.c.event_id)
            ).mappings()
            return [_event_from_row(r) for r in rows]

    def events_about(self, subject: str) -> list[Event]:
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.events)
                .where(t.events.c.subject == subject)
                .order_by(t.events.c.event_id)
            ).mappings()
            return [_event_from_row(r) for r in rows]

    # -- writes --------------------------------------------------------------------------

    def record(self, p: Pending, actor: str = "hook") -> Decision:
        """Write one rating, its decision event and status row in one transaction.

        Returns the decision as written. If an identical submission got there first, its
        first decision is returned with ``replayed`` and nothing is written; if another
        rating claimed the ticket first, this one is written as ``rejected`` /
        ``duplicate_ticket``. Races between workers resolve inside the transaction
        (``ON CONFLICT DO NOTHING`` on the fingerprint and the ticket claim).
        """
        claims = Reason.DUPLICATE_TICKET not in p.reasons
        with self._writing() as conn:
            for _ in range(3):
                rid = self._insert_all(conn, p, claims, actor)
                if rid is not None:
                    return Decision(rid, p.status, p.reasons, p.rule_set_id, p.retry_after_s)
                found = self._lookup(conn, p.rating.fingerprint, p.rating.ticket_id)
                if found.existing is not None:
                    return found.existing
                # Another rating holds the ticket: this one is a duplicate.
                p = Pending(
                    p.rating, Status.REJECTED, (Reason.DUPLICATE_TICKET,), p.evidence, p.rule_set_id
                )
                claims = False
        raise Conflict(f"could not record rating for ticket {p.rating.ticket_id!r}; retry")

    def _insert_all(self, conn: Connection, p: Pending, claims: bool, actor: str) -> int | None:
        """Insert rating + decision event + status; ``None`` if a unique key was taken."""
        row = rating_row(p.rating, p.rule_set_id, claims)
        ev = _decision_event(p, actor)
        status = _status_row(p)
        if self.dialect == "postgresql":
            params = {f"r_{k}": v for k, v in row.items()}
            params.update({f"e_{k}": v for k, v in ev.items()})
            params.update({f"s_{k}": v for k, v in status.items()})
            return conn.execute(_PG_RECORD, params).scalar()
        rid = conn.execute(_SQLITE_RECORD, row).scalar()
        if rid is None:
            return None
        eid = conn.execute(_INSERT_EVENT, {"rating_id": rid, **ev}).scalar_one()
        conn.execute(t.rating_status.insert(), {"rating_id": rid, "last_event_id": eid, **status})
        return int(rid)

    def record_many(self, pending: Sequence[Pending], actor: str = "hook") -> list[Decision]:
        """Write many ratings in one transaction (ingest). Falls back to one by one on a race.

        Ids are allocated up front (a sequence on PostgreSQL, under the write lock on
        SQLite) so the three tables load with plain ``executemany``, no RETURNING.
        Callers must not put two ratings claiming the same ticket, or two identical
        submissions, in one call (the hook flushes before a repeat).
        """
        if not pending:
            return []
        with translate_errors():
            try:
                with self._writing() as conn:
                    rids = self._allocate(conn, t.ratings.c.rating_id, len(pending))
                    eids = self._allocate(conn, t.events.c.event_id, len(pending))
                    self._load(
                        conn,
                        t.ratings,
                        [
                            {
                                "rating_id": rid,
                                **rating_row(
                                    p.rating,
                                    p.rule_set_id,
                                    Reason.DUPLICATE_TICKET not in p.reasons,
                                ),
                            }
                            for rid, p in zip(rids, pending, strict=True)
                        ],
                    )
                    self._load(
                        conn,
                        t.events,
                        [
                            {"event_id": eid, "rating_id": rid, **_decision_event(p, actor)}
                            for rid, eid, p in zip(rids, eids, pending, strict=True)
                        ],
                    )
                    self._load(
                        conn,
                        t.rating_status,
                        [
                            {"rating_id": rid, "last_event_id": eid, **_status_row(p)}
                            for rid, eid, p in zip(rids, eids, pending, strict=True)
                        ],
                    )
            except AlreadyExists:  # a concurrent writer took a ticket or a fingerprint
                return [self.record(p, actor) for p in pending]
        return [
            Decision(rid, p.status, p.reasons, p.rule_set_id, p.retry_after_s)
            for rid, p in zip(rids, pending, strict=True)
        ]

    def _load(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert many rows: ``COPY`` on PostgreSQL (one stream, not one statement per
        row), ``executemany`` elsewhere. Same transaction either way."""
        if not rows:
            return
        if self.dialect != "postgresql":
            conn.execute(table.insert(), rows)
            return
        cols = list(rows[0])
        raw = conn.connection.driver_connection
        assert raw is not None
        sql = f"COPY {table.name} ({', '.join(cols)}) FROM STDIN"
        try:
            with raw.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row([row[c] for c in cols])
        except psycopg.Error as err:  # as SQLAlchemy would have wrapped it
            raise sa.exc.DBAPIError.instance(sql, None, err, psycopg.Error) from err

    def _allocate(self, conn: Connection, col: sa.Column[Any], n: int) -> list[int]:
        """``n`` fresh ids for ``col`` inside the current write transaction."""
        if self.dialect == "postgresql":
            seq = sa.func.pg_get_serial_sequence(col.table.name, col.name)
            rows = conn.execute(
                sa.select(sa.func.nextval(seq)).select_from(sa.func.generate_series(1, n))
            )
            return sorted(int(r[0]) for r in rows)
        # SQLite: a write statement takes the database's write lock for the rest of the
        # transaction, so nobody can insert between reading max(id) and using it.
        conn.exec_driver_sql("UPDATE meta SET key = key WHERE 0")
        start = conn.execute(sa.select(sa.func.coalesce(sa.func.max(col), 0))).scalar_one()
        return list(range(int(start) + 1, int(start) + 1 + n))

    def append(self, ev: Event, expect_version: int | None = None) -> Event:
        """Append one event in a unit of work of its own (see :meth:`SqlUnitOfWork.append`)."""
        with self.unit_of_work() as uow:
            return uow.append(ev, expect_version)

    @contextmanager
    def unit_of_work(self) -> Iterator[SqlUnitOfWork]:
        """One transaction: ledger events and a package's own rows commit together.

        Every committed unit of work marks the ledger as written, so whoever owns the
        process (the composition root) knows to seal the new events into the log.
        """
        with self._writing() as conn:
            yield SqlUnitOfWork(self, conn)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with translate_errors(), self.engine.begin() as conn:
            yield conn
        self.written = True

    def _append(self, conn: Connection, ev: Event, expect_version: int | None) -> Event:
        if ev.status is not None:
            if ev.rating_id is None:
                raise ValueError("a status event needs a rating")
            # Write first (takes SQLite's write lock at once), then add the event.
            cond = t.rating_status.c.rating_id == ev.rating_id
            if expect_version is not None:
                cond = sa.and_(cond, t.rating_status.c.version == expect_version)
            res = conn.execute(
                t.rating_status.update()
                .where(cond)
                .values(
                    status=ev.status.value,
                    reasons=";".join(ev.reasons),
                    version=t.rating_status.c.version + 1,
                    last_event_id=-1,
                )
            )
            if res.rowcount != 1:
                exists = conn.execute(
                    sa.select(t.rating_status.c.version).where(
                        t.rating_status.c.rating_id == ev.rating_id
                    )
                ).first()
                if exists is None:
                    raise NotFound(f"no rating {ev.rating_id}")
                raise Conflict(
                    f"rating {ev.rating_id} changed meanwhile (version {exists.version}, "
                    f"expected {expect_version}); re-read and decide again"
                )
        eid = conn.execute(
            t.events.insert().returning(t.events.c.event_id), _event_row(ev)
        ).scalar_one()
        if ev.status is not None:
            conn.execute(
                t.rating_status.update()
                .where(t.rating_status.c.rating_id == ev.rating_id)
                .values(last_event_id=eid)
            )
        return replace(ev, event_id=int(eid))

    def set_risk(
        self,
        risks: Mapping[int, float],
        *,
        at: datetime | None = None,
        actor: str = "detector",
        subject: str = "risk",
    ) -> int:
        """Record detector risk (0..1) per rating; returns how many ratings changed.

        Append-only: the ratings whose risk changed (by more than 1e-6) get a row in
        ``risk_scores`` under one ``risk.scored`` event whose evidence holds the SHA-256
        of those rows, so the log seals them; ``rating_status.risk`` keeps the latest
        value for reads and is checked against them by ``ledger verify``.
        """
        if not risks:
            return 0
        with self._writing() as conn:
            current: dict[int, float] = {}
            ids = sorted(int(k) for k in risks)
            s = t.rating_status.c
            if len(ids) > 5000:
                # many ratings (a whole ledger's risks): read the id range in slices
                # instead of thousands of IN lists
                for lo in range(ids[0], ids[-1] + 1, 200_000):
                    rows = conn.execute(
                        sa.select(s.rating_id, s.risk).where(
                            s.rating_id >= lo, s.rating_id < lo + 200_000
                        )
                    )
                    current.update({int(r): float(v) for r, v in rows if int(r) in risks})
            else:
                for part in _chunks(ids, 900):
                    rows = conn.execute(sa.select(s.rating_id, s.risk).where(s.rating_id.in_(part)))
                    current.update({int(r): float(v) for r, v in rows})
            changed = [
                (rid, v)
                for rid in ids
                if rid in current and abs((v := risk_value(risks[rid])) - current[rid]) > 1e-6
            ]
            if not changed:
                return 0
            when = at or datetime.now(UTC)
            ev = self._append(
                conn,
                Event(
                    kind="risk.scored",
                    actor=actor,
                    at=when,
                    subject=subject,
                    evidence={"ratings": len(changed), "sha256": risk_digest(changed)},
                ),
                None,
            )
            # plain DBAPI executemany: a whole ledger's risks without per-row SQLAlchemy work
            mark = "?" if self.dialect == "sqlite" else "%s"
            eid = int(ev.event_id or 0)
            conn.exec_driver_sql(
                f"INSERT INTO {t.risk_scores.name} (event_id, rating_id, risk) "
                f"VALUES ({mark}, {mark}, {mark})",
                [(eid, rid, v) for rid, v in changed],
            )
            conn.exec_driver_sql(
                f"UPDATE {t.rating_status.name} SET risk = {mark} WHERE rating_id = {mark}",
                [(v, rid) for rid, v in changed],
            )
            return len(changed)

    # -- venues --------------------------------------------------------------------------

    def replace_venues(
        self,
        venues: Sequence[tuple[str, int]],
        addresses: Sequence[tuple[str, str, str]],
        kiosks: Sequence[Kiosk],
        at: datetime,
        actor: str,
    ) -> None:
        """Replace the venue registry (already pseudonymised) and log it as an event."""
        with self._writing() as conn:
            conn.execute(t.kiosks.delete())
            conn.execute(t.venue_addresses.delete())
            conn.execute(t.venues.delete())
            if venues:
                conn.execute(t.venues.insert(), [{"venue_id": v, "networks": n} for v, n in venues])
            if addresses:
                conn.execute(
                    t.venue_addresses.insert(),
                    [{"address_hash": h, "kind": k, "venue_id": v} for h, k, v in addresses],
                )
            if kiosks:
                conn.execute(
                    t.kiosks.insert(),
                    [
                        {
                            "device_hash": k.device_hash,
                            "venue_id": k.venue_id,
                            "window_id": k.window_id,
                        }
                        for k in kiosks
                    ],
                )
            self._append(
                conn,
                Event(
                    kind="venues.loaded",
                    actor=actor,
                    at=at,
                    subject="venues",
                    evidence={
                        "venues": len(venues),
                        "addresses": len(addresses),
                        "kiosks": len(kiosks),
                    },
                ),
                None,
            )

    def venue_registry(self) -> VenueRegistry:
        with translate_errors(), self.engine.connect() as conn:
            ips: dict[str, str] = {}
            prefixes: dict[str, str] = {}
            for h, kind, venue in conn.execute(
                sa.select(
                    t.venue_addresses.c.address_hash,
                    t.venue_addresses.c.kind,
                    t.venue_addresses.c.venue_id,
                )
            ):
                (ips if kind == "ip" else prefixes)[h] = venue
            ks = {
                h: Kiosk(venue_id=v, window_id=w, device_hash=h)
                for h, v, w in conn.execute(
                    sa.select(t.kiosks.c.device_hash, t.kiosks.c.venue_id, t.kiosks.c.window_id)
                )
            }
        return VenueRegistry(ips, prefixes, ks)

    # -- rule sets and meta ----------------------------------------------------------------

    def activate_rule_set(self, rule_set_id: str, name: str, text: str, at: datetime) -> None:
        """Store a rule set (content-addressed) and make it the active one."""
        with self._writing() as conn:
            exists = conn.execute(
                sa.select(t.rule_sets.c.rule_set_id).where(t.rule_sets.c.rule_set_id == rule_set_id)
            ).first()
            if exists is None:
                conn.execute(
                    t.rule_sets.insert(),
                    {"rule_set_id": rule_set_id, "name": name, "text": text, "activated_at": at},
                )
            else:
                conn.execute(
                    t.rule_sets.update()
                    .where(t.rule_sets.c.rule_set_id == rule_set_id)
                    .values(activated_at=at)
                )
            self._append(
                conn,
                Event(
                    kind="rule_set.activated",
                    actor="admin",
                    at=at,
                    subject=f"rule_set:{rule_set_id}",
                    rule_set_id=rule_set_id,
                ),
                None,
            )

    def active_rule_set(self) -> tuple[str, str] | None:
        """``(rule_set_id, text)`` of the most recently activated rule set."""
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.rule_sets.c.rule_set_id, t.rule_sets.c.text)
                .order_by(t.rule_sets.c.activated_at.desc())
                .limit(1)
            ).first()
        return (row[0], row[1]) if row else None

    def rule_set_text(self, rule_set_id: str) -> str:
        with translate_errors(), self.engine.connect() as conn:
            text = conn.execute(
                sa.select(t.rule_sets.c.text).where(t.rule_sets.c.rule_set_id == rule_set_id)
            ).scalar()
        if text is None:
            raise NotFound(f"no rule set {rule_set_id}")
        return str(text)


def _event_from_row(r: Mapping[Any, Any]) -> Event:
    return Event(
        kind=r["kind"],
        actor=r["actor"],
        at=r["at"],
        rating_id=r["rating_id"],
        status=Status(r["status"]) if r["status"] else None,
        reasons=tuple(json.loads(r["reasons"])),
        rule_set_id=r["rule_set_id"],
        evidence=json.loads(r["evidence"]),
        subject=r["subject"],
        event_id=r["event_id"],
    )


def _chunks(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class SqlUnitOfWork:
    """A :class:`~integrity.ports.UnitOfWork` on one open transaction of a :class:`SqlLedger`."""

    def __init__(self, ledger: SqlLedger, connection: Connection) -> None:
        self.ledger = ledger
        self.connection = connection
        self.dialect = ledger.dialect

    def append(self, ev: Event, expect_version: int | None = None) -> Event:
        return self.ledger._append(self.connection, ev, expect_version)

    def lock(self, key: str) -> None:
        """PostgreSQL: a transaction-scoped advisory lock on ``key``. SQLite: the
        database's write lock, taken at once (before anything is read)."""
        if self.dialect == "postgresql":
            self.connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key}
            )
        else:
            self.connection.exec_driver_sql("UPDATE meta SET key = key WHERE 0")

    def states(self, rating_ids: Sequence[int]) -> dict[int, RatingState]:
        s = t.rating_status.c
        out: dict[int, RatingState] = {}
        for part in _chunks(sorted({int(i) for i in rating_ids}), 900):
            q = sa.select(s.rating_id, s.status, s.version, s.reasons).where(s.rating_id.in_(part))
            if self.dialect == "postgresql":
                q = q.with_for_update()
            for rid, st, version, reasons in self.connection.execute(q):
                out[int(rid)] = RatingState(
                    Status(st), int(version), tuple(x for x in str(reasons).split(";") if x)
                )
        return out

    def change_many(
        self, events: Sequence[Event], only_if: Callable[[RatingState], bool]
    ) -> list[Event]:
        """Status events in bulk: the rows :meth:`append` writes, in three statements.

        The ratings' status rows are locked first (``FOR UPDATE`` on PostgreSQL; the
        database's write lock on SQLite), so nothing can move them between the check
        and the write.
        """
        if not events:
            return []
        if any(ev.status is None or ev.rating_id is None for ev in events):
            raise ValueError("change_many takes status events on ratings only")
        if self.dialect != "postgresql":
            self.lock("rating_status")
        current = self.states([int(ev.rating_id or 0) for ev in events])
        todo = [
            ev
            for ev in events
            if (st := current.get(int(ev.rating_id or 0))) is not None and only_if(st)
        ]
        if len({ev.rating_id for ev in todo}) != len(todo):
            raise ValueError("change_many takes at most one event per rating")
        if not todo:
            return []
        eids = (
            self.connection.execute(
                t.events.insert().returning(t.events.c.event_id, sort_by_parameter_order=True),
                [_event_row(ev) for ev in todo],
            )
            .scalars()
            .all()
        )
        rs = t.rating_status
        self.connection.execute(
            rs.update()
            .where(rs.c.rating_id == sa.bindparam("b_rid"))
            .values(
                status=sa.bindparam("b_status"),
                reasons=sa.bindparam("b_reasons"),
                version=rs.c.version + 1,
                last_event_id=sa.bindparam("b_eid"),
            ),
            [
                {
                    "b_rid": ev.rating_id,
                    "b_status": (ev.status or Status.HELD).value,
                    "b_reasons": ";".join(ev.reasons),
                    "b_eid": eid,
                }
                for ev, eid in zip(todo, eids, strict=True)
            ],
        )
        return [replace(ev, event_id=int(eid)) for ev, eid in zip(todo, eids, strict=True)]


def _event_row(ev: Event) -> dict[str, Any]:
    """The event's columns. Its kind and reasons must be in the catalogue: a code nobody
    documented never reaches the ledger (``ValueError``: a programming error)."""
    unknown = [r for r in ev.reasons if r not in REASONS]
    if ev.kind not in KINDS or unknown:
        raise ValueError(f"not in integrity.catalogue: kind {ev.kind!r}, reasons {unknown}")
    return {
        "rating_id": ev.rating_id,
        "subject": ev.subject,
        "kind": str(ev.kind),
        "actor": ev.actor,
        "status": ev.status.value if ev.status else None,
        "reasons": canonical_json([str(r) for r in ev.reasons]),
        "rule_set_id": ev.rule_set_id,
        "evidence": canonical_json(dict(ev.evidence)),
        "at": ev.at,
    }


_STORED_COLS = (
    *[c for c in t.ratings.c if c.name != "submitted_at_given"],
    t.rating_status.c.status,
    t.rating_status.c.reasons.label("current_reasons"),
    t.rating_status.c.risk,
    t.rating_status.c.version,
    t.rating_status.c.last_event_id,
)

_SORT_KEYS: dict[str, Callable[[StoredRating], Any]] = {
    "rating_id": lambda r: r.rating_id,
    "risk": lambda r: (-r.risk, r.rating_id),
    "submitted_at": lambda r: (r.submitted_at, r.rating_id),
}


def _stored(row: Mapping[str, Any]) -> StoredRating:
    return StoredRating(
        rating_id=int(row["rating_id"]),
        fingerprint=row["fingerprint"],
        ticket_id=row["ticket_id"],
        claims_ticket=bool(row["claims_ticket"]),
        window_id=row["window_id"],
        staff_id=row["staff_id"],
        service_type=row["service_type"],
        channel=row["channel"],
        served_at=row["served_at"],
        submitted_at=row["submitted_at"],
        received_at=row["received_at"],
        occurred_at=row["occurred_at"],
        scores=json.loads(row["scores"]),
        composite=float(row["composite"]),
        comment=row["comment"],
        ip_hash=row["ip_hash"],
        prefix_hash=row["prefix_hash"],
        device_hash=row["device_hash"],
        rule_set_id=row["rule_set_id"],
        status=Status(row["status"]),
        reasons=tuple(x for x in str(row["current_reasons"] or "").split(";") if x),
        risk=float(row["risk"] or 0.0),
        version=int(row["version"]),
        last_event_id=int(row["last_event_id"]),
    )


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
