"""The score ledger on SQL (SQLite by default, PostgreSQL by URL): one code path.

Every write is one transaction: a rating row, its decision event and its status row
go in together or not at all. Driver errors become ``BackendUnavailable``; a lost
race (two workers, one ticket) becomes a clean ``duplicate_ticket`` decision.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import operator
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

from integrity.adapters import tables as t
from integrity.catalogue import KINDS, REASONS, Kind, Reason
from integrity.config import rule_set_id as text_rule_set_id
from integrity.config_tables import (
    PARTITIONED_FORMAT,
    ConfigTables,
    config_subject,
    current_columns,
    table_digest,
)
from integrity.errors import AlreadyExists, ConfigError, Conflict, NotFound
from integrity.forking import Kept
from integrity.model import (
    REPLAY_ACTOR,
    Decision,
    Event,
    Kiosk,
    Rating,
    RatingState,
    Status,
    StoredRating,
    VenueRegistry,
)
from integrity.ports import (
    GROUP_COLUMNS,
    LIMITED_BITS,
    SCAN_COLUMNS,
    STATE_BITS,
    STATE_LIMITED_SHIFT,
    AggregateQuery,
    ClockTimes,
    Lookup,
    LowMark,
    Pending,
    RatingQuery,
    RiskColumns,
    ScanSpec,
    SlotHolder,
    StatusChange,
    Tally,
)
from integrity.sqlkit import Encoded, canonical_json, id_in, metadata, translate_errors

if TYPE_CHECKING:  # numpy and pyarrow are imported where detection's reads use them, so
    # that commands which never read columns (ingest, the hook) start without them
    import numpy as np
    import pyarrow as pa

log = logging.getLogger(__name__)


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


def _bounds(conn: Connection, col: Any, *where: Any) -> tuple[Any, Any]:
    """The least and greatest ``col`` (an indexed column) of the rows ``where``, in one
    round trip: each a scalar subquery, so each is read off the index's ends. SQLite
    answers ``SELECT min(c), max(c)`` in one select by scanning every row in range
    (150 ms over a million ratings); PostgreSQL plans both forms alike."""
    lo = sa.select(sa.func.min(col)).where(*where).scalar_subquery()
    hi = sa.select(sa.func.max(col)).where(*where).scalar_subquery()
    row = conn.execute(sa.select(lo, hi)).one()
    return row[0], row[1]


def _scan_state(status: Any, reasons: Any) -> Any:
    """SQL: the scan's ``state`` integer (see :data:`~integrity.ports.STATE_BITS`)."""
    return (
        sa.case((status == Status.ACCEPTED.value, STATE_BITS["counted"]), else_=0)
        + sa.case((reasons.like(f"%{Reason.DUPLICATE_TICKET.value}%"), STATE_BITS["dup"]), else_=0)
        + sa.case(  # one LIKE for most rows; the bits only where a limit is named
            (reasons.like("%limit%"), _limited_bits(reasons) * (1 << STATE_LIMITED_SHIFT)),
            else_=0,
        )
    )


#: From how many ratings on (by id span) the scan reads through a helper process (see
#: :mod:`integrity.adapters.columnar`): below, starting it costs more than it saves.
BULK_SCAN_ROWS = 200_000


@functools.cache
def scan_schemas() -> tuple[pa.Schema, pa.Schema]:
    """The Arrow schemas of the scan's slices: :data:`~integrity.ports.SCAN_COLUMNS`,
    and ``ScanSpec.state_only``'s (built on first use: pyarrow is imported then)."""
    import pyarrow as pa

    full = pa.schema(
        [
            ("rating_id", pa.int64()),
            ("window_id", pa.string()),
            ("staff_id", pa.string()),
            ("service_type", pa.string()),
            ("served_s", pa.float64()),
            ("submitted_s", pa.float64()),
            ("composite", pa.float64()),
            ("comment", pa.string()),
            ("ip_hash", pa.string()),
            ("prefix_hash", pa.string()),
            ("device_hash", pa.string()),
            ("state", pa.int64()),
        ]
    )
    assert tuple(full.names) == SCAN_COLUMNS
    return full, pa.schema([("rating_id", pa.int64()), ("state", pa.int64())])


#: SQLite's automatic checkpoint: after a commit that leaves the WAL above this many pages.
WAL_AUTOCHECKPOINT = 10_000


def make_engine(url: str) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql://...`` with the ledger's settings.

    SQLite runs in WAL mode with a busy timeout, so readers never block the writer.
    A bare ``postgresql://`` URL uses psycopg 3.
    """
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        _create_private_file(url)
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
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            # Index pages of hashed keys are touched at random: keep them cached (64 MB).
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()

        return engine
    # No pre-ping: it costs a round trip per checkout on the hot path. A connection
    # that died with its server fails one request (BackendUnavailable, HTTP 503) and
    # SQLAlchemy then discards the whole pool, so the next request reconnects.
    return sa.create_engine(url, pool_size=10, max_overflow=20, connect_args={"connect_timeout": 5})


def _create_private_file(url: str) -> None:
    """Create a SQLite ledger file readable by its owner only (0600), before SQLite
    opens it: SQLite gives its ``-wal`` and ``-shm`` files the mode of the database
    file. An existing file, an in-memory database or a missing folder is left alone."""
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except (FileExistsError, FileNotFoundError):
        return
    os.close(fd)


_TRACKER = "integrity.config_writes"


#: The lock every change of configuration holds from its first write until it commits.
CONFIG_LOCK = "config"


class _ConfigWrites:
    """A unit of work's configuration writes: the tables checked against their seal
    before the first write, and those written since they were last sealed.

    A partitioned table (:meth:`ConfigTables.partition_column`) is checked and sealed
    by partition: ``parts_checked`` / ``parts_changed`` hold the partitions (value as
    text -> value) its writes named; a write that named none, or to a table still
    sealed whole (``whole_sealed``), puts it in ``checked`` and ``whole_changed``: every
    partition is checked and then sealed."""

    def __init__(self, ledger: SqlLedger) -> None:
        self.ledger = ledger
        self.tables = ledger.config_tables
        self.checked: set[str] = set()
        self.changed: set[str] = set()
        self.whole_sealed: dict[str, bool] = {}
        self.parts_checked: dict[str, set[str]] = {}
        self.parts_changed: dict[str, dict[str, Any]] = {}
        self.whole_changed: set[str] = set()

    def note(self, conn: Connection, name: str, values: dict[str, Any] | None) -> None:
        """A write to configuration table ``name``, to the partitions ``values`` (``None``:
        to any row). Before the first write to a table (to a partition), takes the
        configuration lock and checks it against its latest seal."""
        column = self.tables.partition_column(name)
        if column is not None and name not in self.whole_sealed:
            _lock(conn, self.ledger.dialect, CONFIG_LOCK)
            self.whole_sealed[name] = self.ledger.sealed_whole(conn, name)
        if column is None or values is None or self.whole_sealed[name]:
            if name not in self.checked:
                self.checked.add(name)
                _lock(conn, self.ledger.dialect, CONFIG_LOCK)
                _refuse_if_edited(self.ledger, conn, name)
            if column is not None:
                self.whole_changed.add(name)
            self.changed.add(name)
            return
        if name not in self.checked:
            seen = self.parts_checked.setdefault(name, set())
            todo = {k: v for k, v in values.items() if k not in seen}
            if todo:
                seen.update(todo)
                _refuse_if_edited(self.ledger, conn, name, partitions=list(todo.values()))
        self.parts_changed.setdefault(name, {}).update(values)
        self.changed.add(name)

    def sealed(self, name: str) -> None:
        self.changed.discard(name)
        self.whole_changed.discard(name)
        self.parts_changed.pop(name, None)


def _track_config_writes(
    conn: Connection, clauseelement: Any, multiparams: Any, params: Any, options: Any
) -> None:
    """``before_execute``: watch every INSERT/UPDATE/DELETE on a configuration table made
    inside a unit of work (other connections carry no tracker and are not watched).

    Before the first such write to a table, the unit of work takes the configuration
    lock and checks the table against its latest seal (``ConfigError`` if it differs:
    a change through the engine never seals over an edit made behind its back); for a
    partitioned table, each partition the statement names, before the first write to
    it (:func:`_partitions_written`)."""
    tracker: _ConfigWrites | None = conn.info.get(_TRACKER)
    if tracker is None or not isinstance(clauseelement, sa.sql.dml.UpdateBase):
        return
    name = getattr(clauseelement.table, "name", None)
    if not isinstance(name, str) or name not in tracker.tables:
        return
    column = tracker.tables.partition_column(name)
    values = None
    if column is not None:
        values = _partitions_written(clauseelement, multiparams, params, column)
    tracker.note(conn, name, values)


def _partitions_written(
    stmt: Any, multiparams: Any, params: Any, column: str
) -> dict[str, Any] | None:
    """The values of ``column`` a write statement can touch (as text -> value), or
    ``None`` when the statement does not say: an INSERT's values of the column, an
    UPDATE's or DELETE's top-level ``column = v`` or ``column IN (...)`` condition (and
    an UPDATE that sets the column, its new values). ``None`` is always safe: it counts
    as a write to every partition."""
    rows: list[Mapping[str, Any]] = [
        r for r in ([params] if params else []) + list(multiparams or ()) if isinstance(r, Mapping)
    ]
    found: dict[str, Any] = {}

    def add(value: Any) -> bool:
        if value is None:
            return False
        found[str(value)] = value
        return True

    def resolve(bind: Any) -> list[Any] | None:
        if not isinstance(bind, sa.BindParameter):
            return None
        if rows and all(bind.key in r for r in rows):
            return [r[bind.key] for r in rows]
        value = bind.effective_value
        if value is None or any(bind.key in r for r in rows):
            return None
        return list(value) if bind.expanding else [value]

    set_values = getattr(stmt, "_values", None) or {}
    set_here = [v for k, v in set_values.items() if getattr(k, "name", k) == column]
    if isinstance(stmt, sa.sql.dml.Insert):
        if getattr(stmt, "_multi_values", None) or getattr(stmt, "select", None) is not None:
            return None
        if set_here:
            got = resolve(set_here[0])
            return found if got is not None and all(add(v) for v in got) else None
        if not rows or not all(add(r.get(column)) for r in rows):
            return None
        return found
    if not isinstance(stmt, sa.sql.dml.Update | sa.sql.dml.Delete):
        return None
    where = stmt.whereclause
    if where is None:
        return None
    conds = list(where.clauses) if _is_and(where) else [where]
    named = False
    for cond in conds:
        left = getattr(cond, "left", None)
        op = getattr(cond, "operator", None)
        if not (isinstance(left, sa.Column) and left.name == column and left.table is stmt.table):
            continue
        if op not in (operator.eq, sa.sql.operators.in_op):
            continue
        got = resolve(cond.right)
        if got is None or not all(add(v) for v in got):
            return None
        named = True
        break
    if not named:
        return None
    if set_here:
        got = resolve(set_here[0])
        if got is None or not all(add(v) for v in got):
            return None
    if isinstance(stmt, sa.sql.dml.Update) and any(column in r for r in rows):
        return None  # the column set per row: say nothing, rather than guess
    return found


def _partition_order(item: tuple[str, Any]) -> tuple[int, str]:
    """Partitions in a fixed order (numbers as numbers): by their text's length, then text."""
    return len(item[0]), item[0]


def _is_and(clause: Any) -> bool:
    return (
        isinstance(clause, sa.sql.elements.BooleanClauseList) and clause.operator is operator.and_
    )


def _sealed_columns(name: str, sealed: Mapping[str, Any]) -> tuple[tuple[str, ...], list[str]]:
    """The columns a seal digested, and those of them the table no longer has."""
    cols = tuple(sealed.get("columns") or ())
    return cols, [c for c in cols if c not in current_columns(name)]


def _refuse_if_edited(
    ledger: SqlLedger,
    conn: Connection,
    name: str,
    refusing: str = "to change or seal it (that would seal over the edit)",
    partitions: Sequence[Any] | None = None,
) -> None:
    """``ConfigError`` if table ``name`` (or those of its ``partitions``) no longer
    matches its latest seal."""
    problems = ledger.config_problems(conn, name, partitions)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(
            f"{problems[0]}{more}; refusing {refusing}. "
            "Run `integrity ledger verify`, and restore the table"
        )


def _lock(conn: Connection, dialect: str, key: str) -> None:
    """PostgreSQL: a transaction-scoped advisory lock on ``key``. SQLite: the
    database's write lock, taken at once."""
    if dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})
    else:
        conn.exec_driver_sql("UPDATE meta SET key = key WHERE 0")


_SCORE_COLS = tuple(f"score_{i}" for i in range(1, t.SCORE_SLOTS + 1))


def rating_row(
    r: Rating,
    rule_set_id: str,
    claims_ticket: bool,
    slots: Mapping[str, int | None] | None = None,
) -> dict[str, Any]:
    """The ``ratings`` row of ``r``; ``slots`` (dimension -> score column slot, see
    :meth:`SqlLedger.score_slots`) fills the score columns (all empty without it)."""
    row = dict.fromkeys(_SCORE_COLS)
    if slots:
        for dim, value in r.scores.items():
            slot = slots.get(dim)
            if slot is not None:
                row[_SCORE_COLS[slot - 1]] = int(value)
    return row | {
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
        "client_id": r.client_id,
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


_PG_RECORD = _pg_record_statement()


@functools.cache
def _pg_record_sql() -> str:
    """``_PG_RECORD`` compiled once for psycopg (on first use: the driver is imported
    only where PostgreSQL is): the live hook passes it plain values (no SQLAlchemy
    parameter processing per call)."""
    from sqlalchemy.dialects.postgresql import psycopg as pg

    return str(_PG_RECORD.compile(dialect=pg.dialect()))


def _pg_record_params(
    p: Pending, claims: bool, actor: str, slots: Mapping[str, int | None]
) -> dict[str, Any]:
    """The parameters of :func:`_pg_record_sql` for one pending rating."""
    params = {f"r_{k}": v for k, v in rating_row(p.rating, p.rule_set_id, claims, slots).items()}
    params.update({f"e_{k}": v for k, v in _decision_event(p, actor).items()})
    params.update({f"s_{k}": v for k, v in _status_row(p).items()})
    return params


def risk_value(x: float) -> float:
    """Risk as stored: clipped to [0, 1], 6 decimals (so digests are reproducible)."""
    return round(min(1.0, max(0.0, float(x))), 6)


def risk_digest(rows: Sequence[tuple[int, float]]) -> str:
    """SHA-256 of a scoring run's ``(rating_id, risk)`` rows in rating order."""
    blob = "\n".join(f"{rid}:{risk:.6f}" for rid, risk in sorted(rows))
    return hashlib.sha256(blob.encode()).hexdigest()


def risk_digest_columns(ids: np.ndarray, risks: np.ndarray) -> str:
    """:func:`risk_digest` of rows given as two columns sorted by rating id (streamed).

    Risks as stored (each exactly the float nearest some ``m / 10**6``, ``0 <= m <=
    10**6``) beside ids in ``[0, 10**18)`` are written as text by array operations (the
    same bytes); any other row, row by row."""
    import numpy as np

    ids = np.asarray(ids)
    risks = np.asarray(risks, dtype=float)
    micro = _micro_risks(ids, risks)
    h = hashlib.sha256()
    if micro is not None:
        for lo in range(0, len(ids), 100_000):
            lines = _digest_lines(ids[lo : lo + 100_000], micro[lo : lo + 100_000])
            h.update(b"\n" + lines if lo else lines)
        return h.hexdigest()
    for lo in range(0, len(ids), 100_000):
        part = zip(ids[lo : lo + 100_000].tolist(), risks[lo : lo + 100_000].tolist(), strict=True)
        text = "\n".join(f"{rid}:{risk:.6f}" for rid, risk in part)
        h.update((("\n" if lo else "") + text).encode())
    return h.hexdigest()


def _micro_risks(ids: np.ndarray, risks: np.ndarray) -> np.ndarray | None:
    """Each risk as the whole number ``m`` of millionths whose nearest float it is
    exactly (the same bits: not -0.0), if every risk is one with ``0 <= m <= 10**6`` and
    every id is in ``[0, 10**18)``; else ``None``."""
    import numpy as np

    if not len(ids):
        return None
    if not np.issubdtype(ids.dtype, np.integer) or int(ids.min()) < 0 or int(ids.max()) >= 10**18:
        return None
    with np.errstate(invalid="ignore"):
        if not bool(((risks >= 0.0) & (risks <= 1.0)).all()):
            return None
    micro = np.rint(risks * 1e6).astype(np.int64)
    back = micro / 1e6  # IEEE division: the float nearest micro / 10**6
    if not bool((back.view(np.int64) == risks.astype(np.float64).view(np.int64)).all()):
        return None
    return micro


def _digest_lines(ids: np.ndarray, micro: np.ndarray) -> bytes:
    """``"\\n".join(f"{rid}:{risk:.6f}")`` of rows whose risks are ``micro / 10**6``
    (see :func:`_micro_risks`), built as a matrix of characters: each row's id digits
    right-aligned, ``:``, the risk's digits, ``\\n``; the padding left out."""
    import numpy as np

    ids = ids.astype(np.int64)
    width = 1
    while width < 18 and bool((ids >= 10**width).any()):
        width += 1
    digits = np.ones(len(ids), dtype=np.int64)  # each id's number of digits
    for k in range(1, width):
        digits += ids >= 10**k
    cols = width + 10  # id, ':', 'd.dddddd', '\n'
    out = np.empty((len(ids), cols), dtype=np.uint8)
    rest = ids.copy()
    for j in range(width - 1, -1, -1):
        out[:, j] = 48 + rest % 10
        rest //= 10
    out[:, width] = ord(":")
    out[:, width + 1] = 48 + micro // 1_000_000
    out[:, width + 2] = ord(".")
    frac = micro % 1_000_000
    for j in range(width + 8, width + 2, -1):
        out[:, j] = 48 + frac % 10
        frac //= 10
    out[:, width + 9] = ord("\n")
    keep = np.ones((len(ids), cols), dtype=bool)
    keep[:, :width] = np.arange(width) >= (width - digits)[:, None]
    return out[keep].tobytes()[:-1]


def _id_runs(ids: np.ndarray, most: int = 1000) -> list[tuple[int, int]] | None:
    """Sorted, distinct ``ids`` as index ranges ``[a, b)`` of consecutive ids, or ``None``
    if they are not distinct or fall in more than ``most`` runs."""
    import numpy as np

    if not len(ids):
        return None
    steps = np.diff(ids)
    if bool((steps < 1).any()):
        return None
    cuts = (np.flatnonzero(steps != 1) + 1).tolist()
    if len(cuts) >= most:
        return None
    return list(pairwise([0, *cuts, len(ids)]))


_RISK_BLOCK = b"RSK1"
#: How far a rating id is shifted left to pack its risk (in millionths, < 2**20) beside
#: it in one whole number (:meth:`SqlLedger._set_risk_packed`).
_RISK_SHIFT = 20


def encode_risks(ids: np.ndarray, risks: np.ndarray) -> bytes:
    """A scoring run's rows as one ``risk_blocks`` value: ``RSK1``, the row count, then
    the rating ids (sorted, as differences) and the risks (the exact float64 values
    stored), each as little-endian 8-byte numbers compressed with zlib. Lossless:
    :func:`decode_risks` gives back the same two columns."""
    import zlib

    import numpy as np

    ids = np.asarray(ids, dtype="<i8")
    risks = np.asarray(risks, dtype="<f8")
    gaps = zlib.compress(np.diff(ids, prepend=np.int64(0)).astype("<i8").tobytes(), 1)
    vals = zlib.compress(risks.tobytes(), 1)
    head = _RISK_BLOCK + len(ids).to_bytes(8, "little") + len(gaps).to_bytes(8, "little")
    return head + gaps + vals


def decode_risks(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The rating ids and risks of a ``risk_blocks`` value (see :func:`encode_risks`);
    ``ValueError`` if it is not one (a damaged or edited block)."""
    import zlib

    import numpy as np

    data = bytes(data)
    if data[:4] != _RISK_BLOCK or len(data) < 20:
        raise ValueError("not a risk block")
    n = int.from_bytes(data[4:12], "little")
    cut = 20 + int.from_bytes(data[12:20], "little")
    try:
        gaps = np.frombuffer(zlib.decompress(data[20:cut]), dtype="<i8")
        risks = np.frombuffer(zlib.decompress(data[cut:]), dtype="<f8")
    except zlib.error as err:
        raise ValueError(f"not a risk block: {err}") from err
    if len(gaps) != n or len(risks) != n:
        raise ValueError("a risk block's columns do not hold its row count")
    return np.cumsum(gaps).astype(np.int64), risks.astype(float)


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


#: A status by its stored value (``Status(value)`` without the enum's call machinery).
_STATUS: dict[str, Status] = {st.value: st for st in Status}


def _sqlite_time(value: datetime | None) -> str | None:
    """A datetime as :class:`~integrity.sqlkit.UTCDateTime` stores it on SQLite (naive
    UTC text with microseconds, SQLAlchemy's format), without the type machinery."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # the usual case: 'YYYY-MM-DD HH:MM:SS.ffffff+00:00'
        return value.isoformat(" ", "microseconds")[:26]
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the ledger")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _same(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetime given to the ledger")
    return value


#: Column order of the bulk path's tuples (``record_many``); every column of each table.
_BULK_RATING_COLS = (
    "rating_id", "fingerprint", "ticket_id", "claims_ticket", "window_id", "staff_id",
    "service_type", "channel", "served_at", "submitted_at", "submitted_at_given",
    "received_at", "occurred_at", "scores", "composite", "comment", "ip_hash",
    "prefix_hash", "device_hash", "rule_set_id", "client_id", *_SCORE_COLS,
)  # fmt: skip
_BULK_EVENT_COLS = ("event_id", "rating_id", *_EVENT_COLS)
_BULK_STATUS_COLS = ("rating_id", "last_event_id", *_STATUS_COLS)
for _table, _cols in (
    (t.ratings, _BULK_RATING_COLS),
    (t.events, _BULK_EVENT_COLS),
    (t.rating_status, _BULK_STATUS_COLS),
):
    assert sorted(_cols) == sorted(c.name for c in _table.columns), _table.name
_KNOWN_REASONS = frozenset(REASONS)


_JSON_CACHE: dict[Any, str] = {}


def _reasons_json(reasons: Sequence[str]) -> str:
    """``canonical_json(list(reasons))``, remembered (a few dozen combinations occur)."""
    key = tuple(reasons)
    found = _JSON_CACHE.get(key)
    if found is None:
        found = canonical_json(list(key))
        if len(_JSON_CACHE) < 4096:
            _JSON_CACHE[key] = found
    return found


_SCORES_JSON: dict[tuple[tuple[str, int], ...], str] = {}


def _scores_json(scores: Mapping[str, int]) -> str:
    """``canonical_json(dict(scores))``, remembered (a rubric has a few thousand
    combinations of scores)."""
    key = tuple(scores.items())
    found = _SCORES_JSON.get(key)
    if found is None:
        found = canonical_json(dict(scores))
        if len(_SCORES_JSON) < 65536:
            _SCORES_JSON[key] = found
    return found


def _evidence_json(evidence: Mapping[str, Any]) -> str:
    """``canonical_json(dict(evidence))``; a flat one of plain strings (the usual
    ``{"client_id": ...}``) remembered."""
    if len(evidence) == 1:
        ((k, v),) = evidence.items()
        if type(v) is str:
            key = ("evidence", k, v)
            found = _JSON_CACHE.get(key)
            if found is None:
                found = canonical_json({k: v})
                if len(_JSON_CACHE) < 4096:
                    _JSON_CACHE[key] = found
            return found
    return canonical_json(dict(evidence))


def _row_values(
    p: Pending,
    claims: bool,
    actor: str,
    slots: Mapping[str, int | None],
    when: Callable[[datetime | None], Any],
) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """The rows ``rating_row``, ``_decision_event`` and ``_status_row`` describe, as
    tuples in the ``_BULK_*_COLS`` order less the ids (rating; event without event and
    rating id; status without rating and event id), times converted by ``when``."""
    r = p.rating
    if not _KNOWN_REASONS.issuperset(p.reasons):
        raise ValueError(f"reasons not in integrity.catalogue: {list(p.reasons)}")
    scores: list[int | None] = [None] * len(_SCORE_COLS)
    for dim, value in r.scores.items():
        slot = slots.get(dim)
        if slot is not None:
            scores[slot - 1] = int(value)
    received = when(r.received_at)
    status = p.status.value
    rating = (
        r.fingerprint, r.ticket_id, claims, r.window_id, r.staff_id, r.service_type,
        r.channel, when(r.served_at), when(r.submitted_at), r.submitted_at_given, received,
        when(r.occurred_at), _scores_json(r.scores), r.composite, r.comment,
        r.ip_hash, r.prefix_hash, r.device_hash, p.rule_set_id, r.client_id, *scores,
    )  # fmt: skip
    event = (
        None, _DECISION, actor, status, _reasons_json(p.reasons), p.rule_set_id,
        _evidence_json(p.evidence), received,
    )  # fmt: skip
    return rating, event, (status, ";".join(p.reasons), 0.0, 1)


_DECISION = Kind.DECISION.value


def _bulk_rows(
    pending: Sequence[Pending],
    rids: Sequence[int],
    eids: Sequence[int],
    actor: str,
    slots: Mapping[str, int | None],
    when: Callable[[datetime | None], Any],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """:func:`_row_values` of each pending rating, with the ids allocated for it."""
    ratings, events, statuses = [], [], []
    for rid, eid, p in zip(rids, eids, pending, strict=True):
        rating, event, status = _row_values(
            p, Reason.DUPLICATE_TICKET not in p.reasons, actor, slots, when
        )
        ratings.append((rid, *rating))
        events.append((eid, rid, *event))
        statuses.append((rid, eid, *status))
    return ratings, events, statuses


@contextmanager
def _driver_errors(sql: str) -> Iterator[None]:
    """A DBAPI error raised by a driver cursor used directly, as SQLAlchemy would have
    wrapped it (``IntegrityError``, ``OperationalError`` ...), for ``translate_errors``."""
    try:
        yield
    except Exception as err:
        base = _dbapi_base(err)
        if base is None:
            raise
        raise sa.exc.DBAPIError.instance(sql, None, err, base) from err


def _dbapi_base(err: Exception) -> type[Exception] | None:
    """The DBAPI ``Error`` class of the driver that raised ``err``, if one did."""
    import sqlite3

    if isinstance(err, sqlite3.Error):
        return sqlite3.Error
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(err, psycopg.Error):
        return psycopg.Error
    return None


def _insert_sql(table: str, cols: Sequence[str], tail: str = "") -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}){tail}"


#: The live hook's three statements on SQLite, as plain SQL (``_insert_all``).
_SQLITE_RATING = _insert_sql(
    "ratings", _BULK_RATING_COLS[1:], " ON CONFLICT DO NOTHING RETURNING rating_id"
)
_SQLITE_EVENT = _insert_sql("events", _BULK_EVENT_COLS[1:], " RETURNING event_id")
_SQLITE_STATUS = _insert_sql("rating_status", _BULK_STATUS_COLS)


def _plain_runner(cur: Any) -> Callable[[str, Any], Any]:
    """A runner of plain SQL statements on a driver cursor, each returning its first row
    (or ``None``); driver errors surface as SQLAlchemy's (see :func:`_driver_errors`)."""

    def plain(sql: str, params: Any) -> Any:
        with _driver_errors(sql):
            cur.execute(sql, params)
            return cur.fetchone() if cur.description is not None else None

    return plain


def _sqlite_rows(
    run: Callable[[str, Any], Any],
    p: Pending,
    claims: bool,
    actor: str,
    slots: Mapping[str, int | None],
) -> int | None:
    """The live hook's three rows on SQLite (rating, decision event, status) through
    ``run``; the rating's id, or ``None`` if a unique key was taken (nothing inserted)."""
    rating, event, status_row = _row_values(p, claims, actor, slots, _sqlite_time)
    found = run(_SQLITE_RATING, rating)
    if found is None:
        return None
    rid = int(found[0])
    eid = run(_SQLITE_EVENT, (rid, *event))
    assert eid is not None
    run(_SQLITE_STATUS, (rid, eid[0], *status_row))
    return rid


class _Checkpointer:
    """A thread that checkpoints a SQLite database's WAL (``PASSIVE``: it never waits
    for the writer, nor the writer for it) each time :meth:`due` says a commit happened,
    on a plain connection of its own (not one of the pool's, whose page cache it would
    fill); :meth:`close` makes a last checkpoint and joins it. A checkpoint that fails
    is left to the next one (or to the automatic checkpoint)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._due = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def due(self) -> None:
        self._due.set()

    def close(self) -> None:
        self._stop = True
        self._due.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
        except sqlite3.Error as err:
            log.warning("WAL checkpoints beside the writer: no connection (%s)", err)
            return
        try:
            while True:
                self._due.wait()
                self._due.clear()
                last = self._stop
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as err:
                    log.warning("WAL checkpoint beside the writer failed: %s", err)
                if last:
                    return
        finally:
            conn.close()


#: How many connections the live hook's writes keep checked out between writes, for up
#: to that many concurrent requests (:meth:`SqlLedger._writer`); a write beyond them
#: checks one out of the pool and returns it.
IDLE_WRITERS = 4


class SqlLedger:
    """Append-only ledger of ratings and events on one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        #: the same pool, each checkout in autocommit (one-statement writes)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.written = False  # set by every committed write: the log has events to seal
        #: The configuration tables sealed on every change and checked by verify; the
        #: composition root registers the packages' tables here.
        self.config_tables = ConfigTables()
        if not sa_event.contains(engine, "before_execute", _track_config_writes):
            sa_event.listen(engine, "before_execute", _track_config_writes)
        #: While :meth:`checkpointing_beside` runs: the thread that checkpoints the WAL.
        self._checkpointer: _Checkpointer | None = None
        if self.dialect == "sqlite":
            sa_event.listen(engine, "checkout", self._autocheckpoint)
        sa_event.listen(engine, "engine_disposed", self._release_writers)
        #: The live hook's idle write connections (checked out of the pool, kept between
        #: writes; each notes in its ``info`` the dispose it was taken after)
        self._writers: Kept[Any] = Kept(IDLE_WRITERS)
        self._disposals = 0
        # Single-statement reads need no transaction: on PostgreSQL that saves the
        # BEGIN/ROLLBACK round trips.
        self.reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._slots: dict[str, int | None] | None = None  # cache of meta['score_columns']
        #: PostgreSQL: the sequence of each serial column, by "table.column" (for ids
        #: allocated in bulk; a sequence is never renamed under a running ledger)
        self._sequences: dict[str, str] = {}
        #: Whether bulk reads (the detection scan) may use an ADBC driver (tests switch
        #: it off to compare with the DBAPI path).
        self.adbc = True

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
        """``lookup`` for many ratings with two queries (plain DBAPI: one array parameter
        on PostgreSQL, chunks of 900 placeholders on SQLite)."""
        fps = [r.fingerprint for r in ratings]
        tickets = list({r.ticket_id for r in ratings})
        with translate_errors(), self.engine.connect() as conn:
            if self.dialect == "postgresql":
                known: dict[str, int] = dict(
                    conn.exec_driver_sql(
                        "SELECT fingerprint, rating_id FROM ratings WHERE fingerprint = ANY(%s)",
                        (fps,),
                    ).all()
                )
                taken = {
                    str(tid)
                    for (tid,) in conn.exec_driver_sql(
                        "SELECT ticket_id FROM ratings WHERE ticket_id = ANY(%s) AND claims_ticket",
                        (tickets,),
                    )
                }
            else:
                known = {}
                taken = set()
                for part in _chunks(fps, 900):
                    marks = ", ".join("?" * len(part))
                    known.update(
                        conn.exec_driver_sql(
                            f"SELECT fingerprint, rating_id FROM ratings WHERE fingerprint IN ({marks})",
                            tuple(part),
                        ).all()
                    )
                for part in _chunks(tickets, 900):
                    marks = ", ".join("?" * len(part))
                    taken.update(
                        str(tid)
                        for (tid,) in conn.exec_driver_sql(
                            f"SELECT ticket_id FROM ratings WHERE ticket_id IN ({marks}) AND claims_ticket",
                            tuple(part),
                        )
                    )
            out = []
            for r in ratings:
                rid = known.get(r.fingerprint)
                existing = (
                    self._first_decision(conn, int(rid), replayed=True) if rid is not None else None
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
        r = t.ratings.c
        base = _ratings_select(query)
        out: list[StoredRating] = []
        with translate_errors(), self.engine.connect() as conn:
            if query.ids is None:
                out = [_stored(dict(row)) for row in conn.execute(base).mappings()]
            elif query.ids:
                q = base.where(id_in(self.dialect, r.rating_id, set(query.ids)))
                out = [_stored(dict(row)) for row in conn.execute(q).mappings()]
        return out

    def iter_ratings(self, query: RatingQuery, batch: int = 5000) -> Iterator[StoredRating]:
        """:meth:`find_ratings`, streamed ``batch`` rows at a time (a server-side cursor on
        PostgreSQL), for exports of the whole ledger."""
        if query.ids is not None:
            yield from self.find_ratings(query)
            return
        with translate_errors(), self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(_ratings_select(query))
            for row in result.mappings():
                yield _stored(row)

    def score_slots(self, dimensions: Iterable[str]) -> Mapping[str, int | None]:
        """The score column slot of each dimension (``None``: beyond the slots, read from
        the ``scores`` JSON), assigning free slots to dimensions never seen before.

        The map lives in ``meta['score_columns']``; a slot, once given, never moves.
        Cached per ledger: only a dimension the cache does not know costs a round trip
        (and, if no process gave it a slot yet, one short locked transaction).
        """
        dims = set(dimensions)
        cache = self._slots
        if cache is not None and dims <= cache.keys():
            return cache
        with translate_errors(), self.reader.connect() as conn:
            slots = read_score_columns(conn)
        if not dims <= slots.keys():
            with translate_errors(), self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                        {"k": t.SCORE_COLUMNS_KEY},
                    )
                else:  # the database's write lock, before reading
                    conn.exec_driver_sql("UPDATE meta SET key = key WHERE 0")
                slots = read_score_columns(conn)
                missing = sorted(dims - slots.keys())
                if missing:
                    used = {v for v in slots.values() if v is not None}
                    free = [i for i in range(1, t.SCORE_SLOTS + 1) if i not in used]
                    for dim in missing:
                        slots[dim] = free.pop(0) if free else None
                    write_score_columns(conn, slots)
        self._slots = slots
        return slots

    def aggregate(self, query: AggregateQuery) -> list[Tally]:
        """Tallies per group, current status and (not counted) current reasons, in ONE
        ``GROUP BY`` over ratings joined with their status (see :class:`AggregateQuery`).

        Dimension scores come from the score columns (``score_N``); a dimension without a
        column is read from the ``scores`` JSON by the database, slower, same figures.
        """
        bad = [c for c in query.by if c not in GROUP_COLUMNS]
        if bad or not query.by:
            raise ValueError(f"aggregate by {bad or '()'}; expected columns of {GROUP_COLUMNS}")
        r, s = t.ratings.c, t.rating_status.c
        with translate_errors(), self.reader.connect() as conn:
            slots = read_score_columns(conn)
            accepted = s.status == Status.ACCEPTED.value
            why = sa.case((accepted, sa.literal("")), else_=s.reasons).label("why")
            keys = [r[c].label(f"k{i}") for i, c in enumerate(query.by)]
            dims = [score_expr(d, slots, self.dialect) for d in query.dimensions]
            cols: list[Any] = [
                *keys,
                s.status.label("status"),
                why,
                sa.func.count().label("n"),
                sa.func.sum(r.composite).label("composite_sum"),
                sa.func.sum(sa.case((r.composite < query.low_below, 1), else_=0)).label("low"),
            ]
            for i, expr in enumerate(dims):
                cols += [sa.func.sum(expr).label(f"d{i}s"), sa.func.count(expr).label(f"d{i}n")]
            conds: list[Any] = []
            if query.occurred_from is not None:
                conds.append(r.occurred_at >= query.occurred_from)
            if query.occurred_to is not None:
                conds.append(r.occurred_at < query.occurred_to)
            if query.window_ids is not None:
                if not query.window_ids:
                    return []
                conds.append(r.window_id.in_(sorted(set(query.window_ids))))
            q = (
                sa.select(*cols)
                .select_from(t.ratings.join(t.rating_status, s.rating_id == r.rating_id))
                .where(*conds)
                .group_by(*[r[c] for c in query.by], s.status, why)
            )
            rows = conn.execute(q).all()
        out = []
        for row in rows:
            m = row._mapping
            out.append(
                Tally(
                    key=tuple(m[f"k{i}"] for i in range(len(query.by))),
                    status=Status(m["status"]),
                    reasons=tuple(x for x in str(m["why"] or "").split(";") if x),
                    ratings=int(m["n"]),
                    composite_sum=float(m["composite_sum"] or 0.0),
                    low=int(m["low"] or 0),
                    dimension_sums={
                        d: int(m[f"d{i}s"] or 0) for i, d in enumerate(query.dimensions)
                    },
                    dimension_counts={
                        d: int(m[f"d{i}n"] or 0) for i, d in enumerate(query.dimensions)
                    },
                )
            )
        return out

    def events(self, event_ids: Sequence[int]) -> dict[int, Event]:
        """Events by id (those that exist)."""
        out: dict[int, Event] = {}
        wanted = {int(i) for i in event_ids}
        if not wanted:
            return out
        with translate_errors(), self.engine.connect() as conn:
            q = sa.select(t.events).where(id_in(self.dialect, t.events.c.event_id, wanted))
            for row in conn.execute(q).mappings():
                out[int(row["event_id"])] = _event_from_row(row)
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
    ) -> Iterator[pa.Table]:
        """Slices of :data:`~integrity.ports.SCAN_COLUMNS` as Arrow tables of
        :func:`scan_schemas`, each in rating-id order, read column by column (an ADBC driver
        where one is installed, see :mod:`integrity.adapters.columnar`); see ``ScanSpec``."""
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
            _scan_state(s.status, s.reasons).label("state"),
        ]
        from integrity.adapters.columnar import columnar

        schema, state_schema = scan_schemas()
        key = r.rating_id
        if spec.state_only and spec.since is None and spec.until is None:
            # the status rows alone (one per rating), not joined with the ratings' wide
            # rows: over 1M ratings 0.18 s of SQLite's time where the join took 0.44-0.66
            key = s.rating_id
            base = sa.select(s.rating_id, _scan_state(s.status, s.reasons).label("state"))
            schema = state_schema
        else:
            if spec.state_only:
                cols = [cols[0], cols[-1]]
                schema = state_schema
            base = sa.select(*cols).select_from(
                t.ratings.join(t.rating_status, s.rating_id == r.rating_id)
            )
        with translate_errors(), self.engine.connect() as conn:
            queries, span = self._scan_slices(conn, base, spec, key)
        if not queries:
            return
        # a helper process (see integrity.adapters.columnar) pays off on large reads only
        bulk = span >= BULK_SCAN_ROWS
        with (
            translate_errors(),
            columnar(self.engine, schema, use_adbc=self.adbc, bulk=bulk) as rd,
        ):
            for table in rd.read_all([q.order_by(key) for q in queries]):
                if on_progress is not None:
                    on_progress(table.num_rows)
                yield table

    def _epoch(self, col: Any) -> Any:
        """Epoch seconds of a timestamp column, computed by the database."""
        if self.dialect == "postgresql":  # a double, not a numeric (no Decimal per row)
            return sa.cast(sa.extract("epoch", col), sa.Float(precision=53))
        return (sa.func.julianday(col) - 2440587.5) * 86400.0

    @staticmethod
    def _scan_slices(
        conn: Connection, base: sa.Select[Any], spec: ScanSpec, key: Any
    ) -> tuple[list[sa.Select[Any]], int]:
        """The scan's slices (over the whole ledger, ranges of ``key``: the rating id of
        the table ``base`` reads), and the span of rating ids they cover (a time range:
        the whole ledger's)."""
        r = t.ratings.c
        if spec.since is None and spec.until is None:
            where = []
            if spec.ids_above is not None:
                where.append(key > spec.ids_above)
            if spec.ids_upto is not None:
                where.append(key <= spec.ids_upto)
            lo, hi = _bounds(conn, key, *where)
            if lo is None:
                return [], 0
            return [
                base.where(key >= a, key < min(a + spec.chunk, int(hi) + 1))
                for a in range(int(lo), int(hi) + 1, spec.chunk)
            ], int(hi) - int(lo) + 1
        lo, hi = _bounds(conn, r.occurred_at)
        if lo is None:
            return [], 0
        id_lo, id_hi = _bounds(conn, r.rating_id)
        span = int(id_hi) - int(id_lo) + 1 if id_lo is not None else 0
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
        return out, span

    def latest_decided(self) -> ClockTimes:
        """See :meth:`integrity.ports.Ledger.latest_decided` (one aggregate query)."""
        r, e = t.ratings.c, t.events.c
        replay = e.actor == REPLAY_ACTOR
        q = sa.select(
            sa.func.max(sa.case((replay, r.submitted_at), else_=None)),
            sa.func.max(sa.case((replay, None), else_=r.received_at)),
        ).select_from(
            t.ratings.join(
                t.events, sa.and_(e.rating_id == r.rating_id, e.kind == Kind.DECISION.value)
            )
        )
        with translate_errors(), self.reader.connect() as conn:
            latest_replay, latest_live = conn.execute(q).one()
        return ClockTimes(
            replay=None if latest_replay is None else _aware(latest_replay),
            live=None if latest_live is None else _aware(latest_live),
        )

    def recent_slot_holders(self, since: ClockTimes) -> list[SlotHolder]:
        """See :meth:`integrity.ports.Ledger.recent_slot_holders`."""
        r, e = t.ratings.c, t.events.c
        replay = e.actor == REPLAY_ACTOR
        conds = []
        if since.replay is not None:
            conds.append(sa.and_(replay, r.submitted_at >= since.replay))
        if since.live is not None:
            conds.append(sa.and_(e.actor != REPLAY_ACTOR, r.received_at >= since.live))
        if not conds:
            return []
        q = (
            sa.select(t.ratings, e.reasons.label("decision_reasons"), e.actor.label("decided_by"))
            .select_from(
                t.ratings.join(
                    t.events, sa.and_(e.rating_id == r.rating_id, e.kind == Kind.DECISION.value)
                )
            )
            .where(sa.or_(*conds))
            .order_by(r.rating_id)
        )
        with translate_errors(), self.reader.connect() as conn:
            return [
                SlotHolder(
                    rating=_rating(row),
                    reasons=tuple(json.loads(row["decision_reasons"])),
                    replay=row["decided_by"] == REPLAY_ACTOR,
                )
                for row in conn.execute(q).mappings()
            ]

    def last_event_id(self, kind: str | None = None) -> int | None:
        """Id of the newest event of ``kind`` (e.g. ``venues.loaded``; any kind when
        ``None``), or ``None``."""
        q = sa.select(sa.func.max(t.events.c.event_id))
        if kind is not None:
            q = q.where(t.events.c.kind == kind)
            if kind != Kind.DECISION:  # the partial index ix_events_kind_event_id
                q = q.where(t.events.c.kind != Kind.DECISION.value)
        with translate_errors(), self.reader.connect() as conn:
            value = conn.execute(q).scalar()
        return int(value) if value is not None else None

    def first_event_after(
        self,
        after: int,
        *,
        kinds: Sequence[str] = (),
        except_actor: str | None = None,
        except_until: int | None = None,
    ) -> int | None:
        """See :meth:`integrity.ports.Ledger.first_event_after` (one indexed range read)."""
        e = t.events.c
        cond: sa.ColumnElement[bool] = e.status.is_not(None)
        if kinds:
            cond = sa.or_(cond, e.kind.in_(list(kinds)))
        q = sa.select(e.event_id).where(e.event_id > after, cond)
        if except_actor is not None:
            q = q.where(~sa.and_(e.event_id <= (except_until or after), e.actor == except_actor))
        with translate_errors(), self.reader.connect() as conn:
            value = conn.execute(q.order_by(e.event_id).limit(1)).scalar()
        return int(value) if value is not None else None

    def event_heads(
        self, after: int, limit: int, until: int | None = None
    ) -> list[tuple[int, str]]:
        """``(event_id, kind)`` of events above ``after`` (up to ``until``), in id order."""
        e = t.events.c
        q = sa.select(e.event_id, e.kind).where(e.event_id > after)
        if until is not None:
            q = q.where(e.event_id <= until)
        q = q.order_by(e.event_id).limit(limit)
        with translate_errors(), self.reader.connect() as conn:
            return [(int(i), str(k)) for i, k in conn.execute(q)]

    def status_changes(
        self, after: int, limit: int, until: int | None = None, *, low: LowMark | None = None
    ) -> list[StatusChange]:
        """Status events above ``after`` (up to ``until``) with their ratings' composite
        and scores, in id order: one join, plain tuples. With ``low``, the accepted ones
        only when low, tested in SQL on the composite and the score columns, and with
        ``low.claims`` the others only when low or claimed (an indexed ``EXISTS``)."""
        # Plain SQL, values converted here (a replayed month reads tens of thousands)
        # On PostgreSQL each rating is fetched by its key (LATERAL): never a hash of every
        # rating per batch, whatever the planner's estimates (cost grows with the batch)
        slots = [f"score_{i}" for i in range(1, t.SCORE_SLOTS + 1)]
        join = (
            f"JOIN LATERAL (SELECT composite, scores, {', '.join(slots)} FROM ratings "
            "WHERE rating_id = e.rating_id) r ON true"
            if self.dialect == "postgresql"
            else "JOIN ratings r ON e.rating_id = r.rating_id"
        )
        sql = (
            "SELECT e.event_id, e.kind, e.rating_id, e.status, e.at, e.actor, e.subject, "
            f"e.reasons, r.composite, r.scores FROM events e {join} "
            "WHERE e.event_id > {p} AND e.status IS NOT NULL"
        )
        params: tuple[Any, ...] = (after,)
        if until is not None:
            sql += " AND e.event_id <= {p}"
            params += (until,)
        base_sql, base_params = sql, params
        if low is not None:
            other = "e.status <> {p}"
            if low.claims is not None:  # a reader's own table of ratings it holds
                table, flag = low.claims
                if not (table.isidentifier() and flag.isidentifier()):
                    raise ValueError(f"not a table and column name: {low.claims!r}")
                other = (
                    f"({other} AND EXISTS (SELECT 1 FROM {table} c "
                    f"WHERE c.rating_id = e.rating_id AND c.{flag}))"
                )
            tests = [other, "r.composite < {p}"]
            params += (Status.ACCEPTED.value, float(low.composite_below))
            if low.dimension_at_most > 0:
                tests += [f"r.{c} <= {{p}}" for c in slots]  # an unused slot is NULL
                params += (int(low.dimension_at_most),) * len(slots)
            sql += f" AND ({' OR '.join(tests)})"
        tail = " ORDER BY e.event_id LIMIT {p}"
        mark = "%s" if self.dialect == "postgresql" else "?"
        status_of = {s.value: s for s in Status}
        loads = json.loads
        with translate_errors(), self.reader.connect() as conn:
            rows = conn.exec_driver_sql((sql + tail).format(p=mark), (*params, limit)).all()
            # A dimension beyond the score columns is in the JSON only: the map is read
            # after the rows (a dimension has its entry before any rating of it is
            # written), and if any has no column, every status event is read
            if (
                low is not None
                and low.dimension_at_most > 0
                and None in read_score_columns(conn).values()
            ):
                rows = conn.exec_driver_sql(
                    (base_sql + tail).format(p=mark), (*base_params, limit)
                ).all()
        # many rows share a time (a batch's events), reasons and scores: each distinct
        # value converted once (the scores' map copied for each row: it is mutable)
        times: dict[Any, datetime] = {}
        codes: dict[str, tuple[str, ...]] = {"[]": ()}
        maps: dict[str, dict[str, int]] = {}
        out = []
        for i, kind, rid, status, at, actor, subject, reasons, composite, scores in rows:
            when = times.get(at)
            if when is None:
                when = times[at] = _utc(at)
            why = codes.get(reasons)
            if why is None:
                why = codes[reasons] = tuple(loads(reasons))
            got = maps.get(scores)
            if got is None:
                got = maps[scores] = loads(scores)
            out.append(
                StatusChange(
                    event_id=int(i),
                    kind=str(kind),
                    rating_id=int(rid),
                    status=status_of[status],
                    at=when,
                    actor=str(actor),
                    subject=subject,
                    reasons=why,
                    composite=float(composite),
                    scores=dict(got),
                )
            )
        return out

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

    def analyze(self) -> None:
        """PostgreSQL: refresh the planner's statistics of the ledger's tables, as after
        any bulk load (a table that grew from nothing within minutes still looks empty to
        the planner, which then hashes whole tables to find a few rows). Samples a fixed
        number of rows, so it costs about the same on any ledger. SQLite: nothing."""
        if self.dialect != "postgresql":
            return
        with translate_errors(), self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "ANALYZE ratings, events, rating_status, log_leaves"
            )

    def record(self, p: Pending, actor: str = "hook") -> Decision:
        """Write one rating, its decision event and status row in one transaction.

        Returns the decision as written. If an identical submission got there first, its
        first decision is returned with ``replayed`` and nothing is written; if another
        rating claimed the ticket first, this one is written as ``rejected`` /
        ``duplicate_ticket``. Races between workers resolve inside the transaction
        (``ON CONFLICT DO NOTHING`` on the fingerprint and the ticket claim).
        """
        slots = self.score_slots(p.rating.scores)
        if not self._watched():
            decided = self._record_plain(p, actor, slots)
            if decided is not None:
                return decided
        with self._writing_one_statement() as conn:
            return self._record(conn, p, actor, slots)

    def _watched(self) -> bool:
        """Whether something watches this engine's statements (a ``before_cursor_execute``
        listener: tracing, or the fault tests' simulated crash; ``echo``): then every
        statement goes through SQLAlchemy, so that it sees them."""
        return bool(self.engine.dispatch.before_cursor_execute) or bool(self.engine.echo)

    def _record_plain(
        self, p: Pending, actor: str, slots: Mapping[str, int | None]
    ) -> Decision | None:
        """The live hook's usual case: :meth:`record`'s three rows on the driver's own
        connection, one kept checked out between writes (no SQLAlchemy connection,
        transaction or result object: on SQLite about 0.04 ms a rating, most of what
        the three statements themselves take; no pool checkout and return either:
        :meth:`_writer`). SQLite: three statements in one transaction; PostgreSQL: one
        statement of data-modifying CTEs in autocommit. ``None`` when a unique key was
        taken (an identical submission, or the ticket's claim): nothing was written, and
        :meth:`_record` settles the race. A write that fails otherwise invalidates the
        connection (closed, its transaction discarded): the next one starts on another,
        so a connection that died with its server fails one request."""
        claims = Reason.DUPLICATE_TICKET not in p.reasons
        with translate_errors():
            fairy = self._writer()
            raw = fairy.driver_connection
            cur = None
            try:
                cur = raw.cursor()
                run = _plain_runner(cur)
                if self.dialect == "sqlite":
                    rid = _sqlite_rows(run, p, claims, actor, slots)
                else:
                    got = run(_pg_record_sql(), _pg_record_params(p, claims, actor, slots))
                    rid = None if got is None else int(got[0])
                if rid is None:
                    raw.rollback()
                else:
                    raw.commit()
            except BaseException as err:
                if cur is not None:
                    cur.close()
                if isinstance(err, sa.exc.IntegrityError):
                    raw.rollback()
                    self._writer_done(fairy)
                else:
                    fairy.invalidate()  # closed, its transaction discarded
                raise
            cur.close()
            self._writer_done(fairy)
            if rid is None:
                return None
        self.written = True
        if self._checkpointer is not None:
            self._checkpointer.due()
        return Decision(rid, p.status, p.reasons, p.rule_set_id, p.retry_after_s)

    def _record(
        self, conn: Connection, p: Pending, actor: str, slots: Mapping[str, int | None]
    ) -> Decision:
        claims = Reason.DUPLICATE_TICKET not in p.reasons
        for _ in range(3):
            rid = self._insert_all(conn, p, claims, actor, slots)
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

    def _insert_all(
        self,
        conn: Connection,
        p: Pending,
        claims: bool,
        actor: str,
        slots: Mapping[str, int | None],
    ) -> int | None:
        """Insert rating + decision event + status; ``None`` if a unique key was taken."""
        with self._statements(conn) as run:
            if self.dialect == "sqlite":
                return _sqlite_rows(run, p, claims, actor, slots)
            got = run(_pg_record_sql(), _pg_record_params(p, claims, actor, slots))
            return None if got is None else int(got[0])

    @contextmanager
    def _statements(self, conn: Connection) -> Iterator[Callable[[str, Any], Any]]:
        """A runner of plain SQL statements in ``conn``'s transaction, each returning its
        first row (or ``None``): the live hook's hot path.

        It uses the driver's own cursor (no statement compiled, no type processing, no
        result object per statement); driver errors surface as SQLAlchemy's, so
        ``translate_errors`` reads them as everywhere else. When something watches
        statements on this engine (a ``before_cursor_execute`` listener: tracing, or
        the fault tests' simulated crash; ``echo``), the same statements go through
        SQLAlchemy so that it sees them."""
        if conn.dispatch.before_cursor_execute or self._watched():

            def watched(sql: str, params: Any) -> Any:
                result = conn.exec_driver_sql(sql, params)
                return result.first() if result.returns_rows else None

            yield watched
            return
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            yield _plain_runner(cur)
        finally:
            cur.close()

    def record_many(self, pending: Sequence[Pending], actor: str = "hook") -> list[Decision]:
        """Write many ratings in one transaction (ingest): all of them or none. Falls back
        to one by one (still one transaction) when a concurrent writer won a race.

        Ids are allocated up front (a sequence on PostgreSQL, under the write lock on
        SQLite) so the three tables load with plain ``executemany``, no RETURNING.
        Callers must not put two ratings claiming the same ticket, or two identical
        submissions, in one call (the hook flushes before a repeat).
        """
        if not pending:
            return []
        slots = self.score_slots({d for p in pending for d in p.rating.scores})
        with translate_errors():
            try:
                with self._writing() as conn:
                    rids = self._allocate(conn, t.ratings.c.rating_id, len(pending))
                    eids = self._allocate(conn, t.events.c.event_id, len(pending))
                    when = _sqlite_time if self.dialect == "sqlite" else _same
                    ratings, events, statuses = _bulk_rows(pending, rids, eids, actor, slots, when)
                    self.load_rows(conn, t.ratings, _BULK_RATING_COLS, ratings)
                    self.load_rows(conn, t.events, _BULK_EVENT_COLS, events)
                    self.load_rows(conn, t.rating_status, _BULK_STATUS_COLS, statuses)
            except AlreadyExists:  # a concurrent writer took a ticket or a fingerprint
                # one by one, settling each race, still in one transaction: all or nothing
                with self._writing() as conn:
                    return [self._record(conn, p, actor, slots) for p in pending]
        return [
            Decision(rid, p.status, p.reasons, p.rule_set_id, p.retry_after_s)
            for rid, p in zip(rids, pending, strict=True)
        ]

    def load_rows(
        self, conn: Connection, table: sa.Table, cols: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        """Insert many rows, given as tuples in the order of ``cols`` with values as the
        driver takes them (no SQLAlchemy type processing, no statement compiled per
        call): ``COPY`` on PostgreSQL (one stream, not one statement per row), one plain
        DBAPI ``executemany`` on SQLite. Same transaction either way."""
        if not rows:
            return
        if self.dialect != "postgresql":
            marks = ", ".join("?" * len(cols))
            conn.exec_driver_sql(
                f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({marks})", rows
            )
            return
        # the PostgreSQL driver's COPY, used directly
        raw = conn.connection.driver_connection
        assert raw is not None
        sql = f"COPY {table.name} ({', '.join(cols)}) FROM STDIN"
        with _driver_errors(sql), raw.cursor() as cur, cur.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)

    def _allocate(self, conn: Connection, col: sa.Column[Any], n: int) -> list[int]:
        """``n`` fresh ids for ``col`` inside the current write transaction."""
        if self.dialect == "postgresql":
            # the sequence's name looked up once: in the statement, the lookup would run
            # for every id (a catalog search each, 7 of every 8 ms of 5,000 ids)
            key = f"{col.table.name}.{col.name}"
            seq = self._sequences.get(key)
            if seq is None:
                found = sa.select(sa.func.pg_get_serial_sequence(col.table.name, col.name))
                seq = self._sequences[key] = str(conn.execute(found).scalar_one())
            rows = conn.exec_driver_sql(
                "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (seq, n)
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
    def checkpointing_beside(self) -> Iterator[None]:
        """Many large write transactions in a row (a detection run's holds and risks): on
        SQLite the write-ahead log is copied into the database file by a thread of its
        own after each commit, while the writer goes on, instead of by the committing
        connection (whose automatic checkpoint is off meanwhile); the last copy is made
        before this returns. What is written and committed is the same either way.
        Elsewhere (PostgreSQL, an in-memory database), or when already inside, nothing
        changes."""
        if (
            self.dialect != "sqlite"
            or self._checkpointer is not None
            or self.engine.url.database in (None, "", ":memory:")
        ):
            yield
            return
        ck = self._checkpointer = _Checkpointer(str(self.engine.url.database))
        try:
            yield
        finally:
            self._checkpointer = None
            ck.close()

    def _autocheckpoint(self, dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        """On checkout (SQLite): the connection's automatic checkpoint off while
        :meth:`checkpointing_beside` runs, else as :func:`make_engine` set it."""
        want = 0 if self._checkpointer is not None else WAL_AUTOCHECKPOINT
        if record.info.get("wal_autocheckpoint", WAL_AUTOCHECKPOINT) != want:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA wal_autocheckpoint={want}")
            cur.close()
            record.info["wal_autocheckpoint"] = want

    def _writer(self) -> Any:
        """A pool connection for one of the live hook's writes: one kept checked out
        since an earlier write (:class:`~integrity.forking.Kept`, :data:`IDLE_WRITERS`
        at most), so that a rating's write does not check a connection out and back in
        (with the pool's reset and bookkeeping: 0.03-0.10 ms a rating on SQLite, on a
        write of about 0.2 ms), else one checked out now. Give it back with
        :meth:`_writer_done`. PostgreSQL's is in autocommit while it is kept; SQLite's
        automatic checkpoint follows :meth:`checkpointing_beside`, as on checkout."""
        fairy: Any = self._writers.take()
        if fairy is None:
            fairy = self.engine.raw_connection()
            fairy.info["writer"] = self._disposals
            if self.dialect == "postgresql":
                fairy.driver_connection.autocommit = True
        if self.dialect == "sqlite":
            want = 0 if self._checkpointer is not None else WAL_AUTOCHECKPOINT
            if fairy.info.get("wal_autocheckpoint", WAL_AUTOCHECKPOINT) != want:
                fairy.driver_connection.execute(f"PRAGMA wal_autocheckpoint={want}")
                fairy.info["wal_autocheckpoint"] = want
        return fairy

    def _writer_done(self, fairy: Any) -> None:
        """Keep a write connection for the next write, or give it back: closed when it
        was taken before the engine's last ``dispose``, to the pool when
        :data:`IDLE_WRITERS` are kept already."""
        if fairy.info.get("writer") != self._disposals:
            fairy.invalidate()
        elif not self._writers.keep(fairy):
            del fairy.info["writer"]
            if self.dialect == "postgresql":
                fairy.driver_connection.autocommit = False  # as the pool hands it out
            fairy.close()

    def _release_writers(self, _engine: Engine) -> None:
        """On the engine's ``dispose``: close the write connections kept (in a forked
        child the parent's are left alone: closing an inherited SQLite handle would drop
        this process's own locks on the file, and closing an inherited PostgreSQL one
        would end the parent's session)."""
        for fairy in self._writers.drain():
            fairy.invalidate()
        self._disposals += 1

    @contextmanager
    def _writing_one_statement(self) -> Iterator[Connection]:
        """A connection for writes that are each one atomic statement (the live hook's
        record: on PostgreSQL the rating, its decision event and status row go in as
        one statement of data-modifying CTEs). PostgreSQL: autocommit, so each
        statement is its own transaction and needs no ``BEGIN`` and ``COMMIT`` round
        trips; no configuration table may be written here (nothing tracks it). SQLite
        writes the three rows as three statements: one transaction (:meth:`_writing`)."""
        if self.dialect != "postgresql":
            with self._writing() as conn:
                yield conn
            return
        with translate_errors(), self._autocommit.connect() as conn:
            yield conn
        self.written = True

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """One write transaction. It refuses to commit (``ValueError``, everything rolled
        back) if it changed a configuration table after that table's last seal."""
        with translate_errors(), self.engine.begin() as conn:
            tracker = _ConfigWrites(self)
            conn.info[_TRACKER] = tracker
            try:
                yield conn
                if tracker.changed:
                    raise ValueError(
                        "configuration table(s) "
                        + ", ".join(sorted(tracker.changed))
                        + " changed without a seal: call uow.seal_tables(...) after the last write"
                    )
            finally:
                conn.info.pop(_TRACKER, None)
        self.written = True
        if self._checkpointer is not None:
            self._checkpointer.due()

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
        elif ev.rating_id is not None:  # about a rating, not changing its status
            _require_ratings(conn, [ev.rating_id])
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
        risks: Mapping[int, float] | RiskColumns,
        *,
        at: datetime | None = None,
        actor: str = "detector",
        subject: str = "risk",
    ) -> int:
        """Record detector risk (0..1) per rating; returns how many ratings changed.

        Append-only: the ratings whose risk changed (by more than 1e-6), with their new
        values, go in one ``risk_blocks`` row (two compressed columns, not a row per
        rating) under one ``risk.scored`` event whose evidence holds the SHA-256 of
        those rows, so the log seals them; ``rating_status.risk`` keeps the latest value
        for reads and is checked against them by ``ledger verify``.
        """
        import numpy as np

        if isinstance(risks, RiskColumns):
            ids = np.asarray(risks.rating_ids, dtype=np.int64)
            vals = np.asarray(risks.risks, dtype=float)
        else:
            ids = np.fromiter((int(k) for k in risks), dtype=np.int64, count=len(risks))
            vals = np.fromiter((float(v) for v in risks.values()), dtype=float, count=len(risks))
        if not len(ids):
            return 0
        order = np.argsort(ids, kind="stable")
        ids, vals = ids[order], np.round(np.clip(vals[order], 0.0, 1.0), 6)
        with self._writing() as conn:
            s = t.rating_status.c
            dense = _id_runs(ids) if len(ids) > 5000 else None
            if dense is not None:
                # many ratings in few runs of consecutive ids (a whole ledger's risks):
                # which exist, counted per run; the stored risks read where not 0 (a
                # first run reads none), so no Python object per rating
                known, cur_ids, cur_vals = self._stored_risks(conn, ids, dense)
                current = np.zeros(len(ids))
                if len(cur_ids):
                    pos = np.minimum(np.searchsorted(cur_ids, ids), len(cur_ids) - 1)
                    hit = cur_ids[pos] == ids
                    current[hit] = cur_vals[pos[hit]]
                moved = known & (np.abs(vals - current) > 1e-6)
            else:
                # scattered ratings: their status rows, in one statement
                q = sa.select(s.rating_id, s.risk).where(
                    id_in(self.dialect, s.rating_id, ids.tolist())
                )
                rows = conn.execute(q).cursor.fetchall()
                got = np.array(rows, dtype=float).reshape(-1, 2)
                cur_ids = got[:, 0].astype(np.int64)
                cur_order = np.argsort(cur_ids, kind="stable")
                cur_ids, cur_vals = cur_ids[cur_order], got[cur_order, 1]
                pos = np.searchsorted(cur_ids, ids)
                pos_ok = np.minimum(pos, max(len(cur_ids) - 1, 0))
                known = (pos < len(cur_ids)) & (cur_ids[pos_ok] == ids) if len(cur_ids) else pos < 0
                moved = known & (np.abs(vals - (cur_vals[pos_ok] if len(cur_ids) else 0.0)) > 1e-6)
            ch_ids, ch_vals = ids[moved], vals[moved]
            if not len(ch_ids):
                return 0
            when = at or datetime.now(UTC)
            ev = self._append(
                conn,
                Event(
                    kind="risk.scored",
                    actor=actor,
                    at=when,
                    subject=subject,
                    evidence={
                        "ratings": len(ch_ids),
                        "sha256": risk_digest_columns(ch_ids, ch_vals),
                    },
                ),
                None,
            )
            # the run's rows as one block of columns under its event (sealed by the
            # event's digest), then the current value in the status rows
            conn.execute(
                t.risk_blocks.insert(),
                {
                    "event_id": int(ev.event_id or 0),
                    "ratings": len(ch_ids),
                    "data": encode_risks(ch_ids, ch_vals),
                },
            )
            if self.dialect == "sqlite" and self._set_risk_packed(conn, ch_ids, ch_vals):
                return len(ch_ids)
            for lo in range(0, len(ch_ids), 200_000):  # a slice of rows at a time
                part_ids = ch_ids[lo : lo + 200_000].tolist()
                part_vals = ch_vals[lo : lo + 200_000].tolist()
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(
                        f"UPDATE {t.rating_status.name} AS s SET risk = v.risk "
                        "FROM unnest(%s::bigint[], %s::float8[]) AS v(rating_id, risk) "
                        "WHERE s.rating_id = v.rating_id",
                        (part_ids, part_vals),
                    )
                    continue
                # SQLite: plain DBAPI executemany, no per-row SQLAlchemy work
                conn.exec_driver_sql(
                    f"UPDATE {t.rating_status.name} SET risk = ? WHERE rating_id = ?",
                    list(zip(part_vals, part_ids, strict=True)),
                )
            return len(ch_ids)

    @staticmethod
    def _set_risk_packed(conn: Connection, ids: np.ndarray, vals: np.ndarray) -> bool:
        """SQLite: ``rating_status.risk`` of the sorted ``ids`` set to ``vals`` by one
        statement per slice, each row given as one whole number (the rating id shifted
        left by 20 bits, plus the risk in millionths) in a JSON array that SQLite reads
        with ``json_each`` and divides back (the same float: ``vals`` are rounded to 6
        decimals, see :func:`_micro_risks`); no driver call per row. ``False`` (nothing
        written) when a value or an id does not fit that, or this SQLite lacks
        ``UPDATE ... FROM`` (3.33) or built-in JSON (3.38): the caller then writes row
        by row."""
        import numpy as np

        if sqlite3.sqlite_version_info < (3, 38, 0):
            return False
        micro = _micro_risks(ids, vals)
        if micro is None or int(ids[-1]) >= 1 << 42:
            return False
        packed = (ids.astype(np.int64) << _RISK_SHIFT) | micro
        sql = (
            f"UPDATE {t.rating_status.name} SET risk = v.risk FROM "
            f"(SELECT value >> {_RISK_SHIFT} AS rating_id, "
            f"(value & {(1 << _RISK_SHIFT) - 1}) / 1000000.0 AS risk FROM json_each(?)) AS v "
            f"WHERE {t.rating_status.name}.rating_id = v.rating_id"
        )
        for lo in range(0, len(packed), 200_000):  # a slice of rows at a time
            conn.exec_driver_sql(sql, (json.dumps(packed[lo : lo + 200_000].tolist()),))
        return True

    @staticmethod
    def _stored_risks(
        conn: Connection, ids: np.ndarray, runs: list[tuple[int, int]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For sorted ``ids`` in ``runs`` (index ranges of consecutive ids, see
        :func:`_id_runs`): which have a status row, and the ids and risks of the status
        rows in their range whose risk is not 0 (sorted by id). A run whose rows all exist
        is known from one count; otherwise its ids are read."""
        import numpy as np

        s = t.rating_status.c
        known = np.zeros(len(ids), dtype=bool)
        for a, b in runs:
            lo, hi = int(ids[a]), int(ids[b - 1])
            rng = (s.rating_id >= lo, s.rating_id <= hi)
            n = conn.execute(sa.select(sa.func.count()).where(*rng)).scalar_one()
            if int(n) == b - a:
                known[a:b] = True
            else:
                have = [r for (r,) in conn.execute(sa.select(s.rating_id).where(*rng))]
                known[a:b] = np.isin(ids[a:b], np.array(have, dtype=np.int64))
        parts = []
        for lo in range(int(ids[0]), int(ids[-1]) + 1, 500_000):
            q = sa.select(s.rating_id, s.risk).where(
                s.rating_id >= lo, s.rating_id < lo + 500_000, s.risk != 0
            )
            rows = conn.execute(q).cursor.fetchall()
            if rows:
                parts.append(np.array(rows, dtype=float))
        got = np.concatenate(parts) if parts else np.zeros((0, 2))
        cur_ids = got[:, 0].astype(np.int64)
        order = np.argsort(cur_ids, kind="stable")
        return known, cur_ids[order], got[order, 1]

    # -- venues --------------------------------------------------------------------------

    def replace_venues(
        self,
        venues: Sequence[tuple[str, int]],
        addresses: Sequence[tuple[str, str, str]],
        kiosks: Sequence[Kiosk],
        at: datetime,
        actor: str,
    ) -> None:
        """Replace the venue registry (already pseudonymised), log it as an event and
        seal its tables."""
        with self.unit_of_work() as uow:
            conn = uow.connection
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
            uow.seal_tables("venues", "venue_addresses", "kiosks", at=at, actor=actor)

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

    def activate_rule_set(
        self, rule_set_id: str, name: str, text: str, at: datetime, actor: str = "admin"
    ) -> None:
        """Store a rule set (content-addressed) and make it the active one.

        The ``rule_set.activated`` event records the full SHA-256 of the text, so the
        sealed log pins the exact text; the ``rule_sets`` table is sealed with it.
        """
        if text_rule_set_id(text) != rule_set_id:
            raise ValueError(f"rule set id {rule_set_id} is not the id of its text")
        with self.unit_of_work() as uow:
            conn = uow.connection
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
                    actor=actor,
                    at=at,
                    subject=f"rule_set:{rule_set_id}",
                    rule_set_id=rule_set_id,
                    evidence={
                        "name": name,
                        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                    },
                ),
                None,
            )
            uow.seal_tables("rule_sets", at=at, actor=actor)

    def active_rule_set(self) -> tuple[str, str] | None:
        """``(rule_set_id, text)`` of the most recently activated rule set."""
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.rule_sets.c.rule_set_id, t.rule_sets.c.text)
                .order_by(t.rule_sets.c.activated_at.desc())
                .limit(1)
            ).first()
        return (row[0], row[1]) if row else None

    # -- configuration tables ------------------------------------------------------------

    def latest_config_seals(self, conn: Connection) -> dict[str, tuple[int, dict[str, Any]]]:
        """Each sealed table's newest ``config.sealed`` event: name -> (event id, evidence)."""
        ev = t.events.c
        last = (
            sa.select(sa.func.max(ev.event_id))
            # named so SQLite reads the kind index, not the whole ledger
            .where(ev.kind == Kind.CONFIG_SEALED.value, ev.kind != Kind.DECISION.value)
            .group_by(ev.subject)
        )
        rows = conn.execute(
            sa.select(ev.event_id, ev.subject, ev.evidence).where(ev.event_id.in_(last))
        ).all()
        out: dict[str, tuple[int, dict[str, Any]]] = {}
        for eid, subject, evidence in rows:
            name = str(subject).removeprefix("table:")
            out[name] = (int(eid), json.loads(evidence))
        return out

    def latest_config_seal(self, conn: Connection, name: str) -> tuple[int, dict[str, Any]] | None:
        """Table ``name``'s newest ``config.sealed`` event: (event id, evidence), or ``None``."""
        ev = t.events.c
        row = conn.execute(
            sa.select(ev.event_id, ev.evidence)
            .where(ev.kind == Kind.CONFIG_SEALED.value, ev.subject == config_subject(name))
            .order_by(ev.event_id.desc())
            .limit(1)
        ).first()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def config_problem(
        self, conn: Connection, name: str, seal: tuple[int, dict[str, Any]] | None
    ) -> str | None:
        """What is wrong with configuration table ``name`` (read on ``conn``) against its
        latest ``seal``, or ``None``: "table people differs from what event 123 sealed ..."."""
        if seal is None:
            rows = table_digest(conn, name).rows
            if rows:
                return (
                    f"table {name} has {rows} row(s) but no config.sealed event covers it "
                    "(written behind the engine's back, or an instance from before seals: "
                    "`integrity init` seals those)"
                )
            return None
        eid, sealed = seal
        cols, gone = _sealed_columns(name, sealed)
        if gone:
            return (
                f"table {name}: column(s) {', '.join(gone)} sealed by event {eid} no longer exist"
            )
        got = table_digest(conn, name, cols)
        if got.sha256 != sealed.get("sha256"):
            return (
                f"table {name} differs from what event {eid} sealed "
                f"({got.rows} row(s) now, {sealed.get('rows')} sealed)"
            )
        return None

    def sealed_whole(self, conn: Connection, name: str) -> bool:
        """Whether partitioned table ``name`` is still sealed whole: its newest
        ``table:<name>`` seal is a whole-table digest (an instance from before it was
        partitioned), not the ``config-partitioned/v1`` switch."""
        seal = self.latest_config_seal(conn, name)
        return seal is not None and seal[1].get("format") != PARTITIONED_FORMAT

    def partition_seals(
        self, conn: Connection, name: str, values: Sequence[Any] | None = None
    ) -> dict[str, tuple[int, dict[str, Any]]]:
        """The newest seal of each partition of ``name`` (those of ``values``, or every
        one), newer than the table's switch to partition seals: value as text ->
        (event id, evidence)."""
        column = self.config_tables.partition_column(name)
        assert column is not None, name
        whole = self.latest_config_seal(conn, name)
        since = whole[0] if whole is not None else 0
        ev = t.events.c
        if values is None:  # ``kind <> 'decision'``: the partial index of non-decisions
            which = sa.and_(
                ev.kind != Kind.DECISION.value,
                ev.subject.startswith(f"table:{name}/{column}=", autoescape=True),
            )
        else:
            which = ev.subject.in_([config_subject(name, (column, v)) for v in values])
        last = (
            sa.select(sa.func.max(ev.event_id))
            .where(ev.kind == Kind.CONFIG_SEALED.value, which, ev.event_id > since)
            .group_by(ev.subject)
        )
        out: dict[str, tuple[int, dict[str, Any]]] = {}
        for eid, evidence in conn.execute(
            sa.select(ev.event_id, ev.evidence).where(ev.event_id.in_(last))
        ):
            doc = json.loads(evidence)
            out[str(doc["partition"]["value"])] = (int(eid), doc)
        return out

    def partition_values(self, conn: Connection, name: str) -> dict[str, Any]:
        """The values of partitioned table ``name``'s partition column that have rows."""
        column = self.config_tables.partition_column(name)
        assert column is not None, name
        col = metadata.tables[name].c[column]
        return {str(v): v for (v,) in conn.execute(sa.select(col).distinct())}

    def config_problems(
        self, conn: Connection, name: str, partitions: Sequence[Any] | None = None
    ) -> list[str]:
        """What is wrong with configuration table ``name`` (read on ``conn``) against its
        latest seals. A partitioned table: those of its ``partitions`` (default: every
        partition with rows or a seal), each one named; while it is sealed whole, the
        whole table."""
        column = self.config_tables.partition_column(name)
        whole = self.latest_config_seal(conn, name)
        if column is None or (whole is not None and whole[1].get("format") != PARTITIONED_FORMAT):
            problem = self.config_problem(conn, name, whole)
            return [] if problem is None else [problem]
        seals = self.partition_seals(conn, name, partitions)
        if partitions is None:
            values = self.partition_values(conn, name)
            for key, (_, doc) in seals.items():
                values.setdefault(key, doc["partition"]["value"])
        else:
            values = {str(v): v for v in partitions}
        problems = []
        for key, value in sorted(values.items(), key=_partition_order):
            problem = self._partition_problem(conn, name, (column, value), seals.get(key))
            if problem is not None:
                problems.append(problem)
        return problems

    def _partition_problem(
        self,
        conn: Connection,
        name: str,
        partition: tuple[str, Any],
        seal: tuple[int, dict[str, Any]] | None,
    ) -> str | None:
        column, value = partition
        if seal is None:
            table = metadata.tables[name]
            rows = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c[column] == value)
            ).scalar_one()
            if rows:
                return (
                    f"table {name} has {rows} row(s) with {column} {value} but no config.sealed "
                    "event covers them (written behind the engine's back)"
                )
            return None
        eid, sealed = seal
        cols, gone = _sealed_columns(name, sealed)
        if gone:
            return (
                f"table {name}: column(s) {', '.join(gone)} sealed by event {eid} "
                f"for {column} {value} no longer exist"
            )
        got = table_digest(conn, name, cols, partition)
        if got.sha256 != sealed.get("sha256"):
            return (
                f"table {name} differs from what event {eid} sealed for {column} {value} "
                f"({got.rows} row(s) now, {sealed.get('rows')} sealed)"
            )
        return None

    def adopt_config(self, at: datetime, actor: str = "init") -> list[str]:
        """Seal the configuration tables an upgrade brings under the seal; returns them.

        A table with rows but no seal yet (an instance from before seals, a package
        table registered since) is sealed as it stands; a table whose columns changed
        since its last seal (a migration added one) is sealed again, but only if its
        content over the sealed columns still matches that seal, so an upgrade never
        launders an edit: ``ledger verify`` keeps reporting it. A partitioned table is
        handled partition by partition, and one still sealed whole (sealed before it was
        partitioned) is switched to partition seals if it still matches that seal.
        """
        adopted: list[str] = []
        parts: dict[str, list[Any]] = {}
        with self.unit_of_work() as uow:
            conn = uow.connection
            present = set(sa.inspect(conn).get_table_names())
            seals = self.latest_config_seals(conn)
            for name in self.config_tables:
                if name not in present:
                    continue
                column = self.config_tables.partition_column(name)
                if column is not None and not self.sealed_whole(conn, name):
                    values = self._adopt_partitions(conn, name, column)
                    if values is None or values:
                        adopted.append(name)
                        if values is not None:
                            parts[name] = values
                    continue
                if name not in seals:
                    if table_digest(conn, name).rows:
                        adopted.append(name)
                    continue
                sealed = seals[name][1]
                cols = tuple(sealed.get("columns") or ())
                now_cols = current_columns(name)
                if column is None and (
                    set(cols) == set(now_cols) or not set(cols) <= set(now_cols)
                ):
                    continue
                if set(cols) <= set(now_cols) and table_digest(
                    conn, name, cols
                ).sha256 == sealed.get("sha256"):
                    adopted.append(name)
            if adopted:
                uow.lock(CONFIG_LOCK)
                uow._seal(adopted, at, actor, parts)
        return adopted

    def _adopt_partitions(self, conn: Connection, name: str, column: str) -> list[Any] | None:
        """For :meth:`adopt_config`: a partitioned table sealed by partition (or never):
        ``None`` to seal every partition (a table with rows and no seal of any kind), else
        the partitions whose columns changed since their seal and that still match it."""
        seals = self.partition_seals(conn, name)
        if not seals and self.latest_config_seal(conn, name) is None:
            return None if self.partition_values(conn, name) else []
        now_cols = current_columns(name)
        out = []
        for _, (_, sealed) in sorted(seals.items()):
            cols = tuple(sealed.get("columns") or ())
            if set(cols) == set(now_cols) or not set(cols) <= set(now_cols):
                continue
            value = sealed["partition"]["value"]
            if table_digest(conn, name, cols, (column, value)).sha256 == sealed.get("sha256"):
                out.append(value)
        return out

    def rule_set_text(self, rule_set_id: str) -> str:
        with translate_errors(), self.engine.connect() as conn:
            text = conn.execute(
                sa.select(t.rule_sets.c.text).where(t.rule_sets.c.rule_set_id == rule_set_id)
            ).scalar()
        if text is None:
            raise NotFound(f"no rule set {rule_set_id}")
        return str(text)


def _ratings_select(query: RatingQuery) -> sa.Select[Any]:
    """The stored ratings ``query`` asks for (without its ``ids``), in its order."""
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
        conds.append(r.staff_id.is_(None) if query.staff_id == "" else r.staff_id == query.staff_id)
    if query.client_id is not None:
        conds.append(r.client_id == query.client_id)
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
    return base


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
        _lock(self.connection, self.dialect, key)

    def seal_tables(self, *names: str, at: datetime, actor: str) -> list[Event]:
        """See :meth:`integrity.ports.UnitOfWork.seal_tables`.

        Every change of configuration holds one lock (:data:`CONFIG_LOCK`: an advisory
        lock on PostgreSQL, the write lock on SQLite) from its first write (or from
        here) until it commits, so changes of configuration are serialised and the
        newest seal of a table covers every committed change. A partitioned table is
        sealed in the partitions this unit of work wrote (each checked before its first
        write); one named here without a write, or written without naming partitions,
        is checked and sealed in every partition.
        """
        tracker: _ConfigWrites | None = self.connection.info.get(_TRACKER)
        todo = sorted(set(names)) if names else sorted(tracker.changed if tracker else ())
        unknown = [n for n in todo if n not in self.ledger.config_tables]
        if unknown:
            raise ValueError(
                f"not registered configuration tables: {', '.join(unknown)} "
                "(register them with ledger.config_tables.register in the composition root)"
            )
        if todo:
            self.lock(CONFIG_LOCK)
        for name in todo:  # a table sealed without a write here is checked first too
            if tracker is None:
                continue
            if name in tracker.parts_changed and name not in tracker.whole_changed:
                continue  # each partition written was checked before its first write
            if name not in tracker.checked:
                tracker.checked.add(name)
                _refuse_if_edited(self.ledger, self.connection, name)
        return self._seal(todo, at, actor)

    def check_sealed(self, *names: str, refusing: str) -> None:
        """See :meth:`integrity.ports.UnitOfWork.check_sealed`."""
        unknown = [n for n in names if n not in self.ledger.config_tables]
        if unknown:
            raise ValueError(f"not registered configuration tables: {', '.join(unknown)}")
        self.lock(CONFIG_LOCK)
        for name in sorted(set(names)):
            _refuse_if_edited(self.ledger, self.connection, name, refusing)

    def _seal(
        self,
        names: Sequence[str],
        at: datetime,
        actor: str,
        partitions: Mapping[str, Sequence[Any]] | None = None,
    ) -> list[Event]:
        """Append one ``config.sealed`` event per table, or per partition of a partitioned
        table (no checks: see ``seal_tables``). A partitioned table's partitions: those
        in ``partitions``, else those this unit of work wrote, else every one (with rows
        or a seal); one still sealed whole is first switched to partition seals."""
        tracker: _ConfigWrites | None = self.connection.info.get(_TRACKER)
        out = []
        for name in names:
            column = self.ledger.config_tables.partition_column(name)
            if column is None:
                digests = [table_digest(self.connection, name)]
            else:
                values: list[Any] | None = None
                if partitions is not None and name in partitions:
                    values = list(partitions[name])
                elif (
                    tracker is not None
                    and name in tracker.parts_changed
                    and name not in tracker.whole_changed
                ):
                    values = list(tracker.parts_changed[name].values())
                if self.ledger.sealed_whole(self.connection, name):
                    values = None
                    out.append(self._switch_to_partitions(name, column, at, actor))
                    if tracker is not None:
                        tracker.whole_sealed[name] = False
                if values is None:
                    every = self.ledger.partition_values(self.connection, name)
                    for key, (_, doc) in self.ledger.partition_seals(self.connection, name).items():
                        every.setdefault(key, doc["partition"]["value"])
                    values = [v for _, v in sorted(every.items(), key=_partition_order)]
                digests = [
                    table_digest(self.connection, name, partition=(column, v)) for v in values
                ]
            for digest in digests:
                out.append(
                    self.append(
                        Event(
                            kind=Kind.CONFIG_SEALED,
                            actor=actor,
                            at=at,
                            subject=config_subject(name, digest.partition),
                            evidence={"table": name, **digest.evidence()},
                        )
                    )
                )
            if tracker is not None:
                tracker.sealed(name)
        return out

    def _switch_to_partitions(self, name: str, column: str, at: datetime, actor: str) -> Event:
        """The event after which partitioned table ``name``, sealed whole until now, is
        sealed by partition (its whole-table seal checked by the caller)."""
        return self.append(
            Event(
                kind=Kind.CONFIG_SEALED,
                actor=actor,
                at=at,
                subject=config_subject(name),
                evidence={"table": name, "format": PARTITIONED_FORMAT, "partition": column},
            )
        )

    def states(self, rating_ids: Sequence[int]) -> dict[int, RatingState]:
        s = t.rating_status.c
        out: dict[int, RatingState] = {}
        split: dict[str, tuple[str, ...]] = {}  # a few distinct reason lists, split once
        wanted = {int(i) for i in rating_ids}
        if not wanted:
            return out
        q = sa.select(s.rating_id, s.status, s.version, s.reasons).where(
            id_in(self.dialect, s.rating_id, wanted)
        )
        if self.dialect == "postgresql":
            q = q.with_for_update()
        # plain driver rows (ints and strings: no type processing to skip)
        for rid, st, version, reasons in self.connection.execute(q).cursor.fetchall():
            text = str(reasons)
            got = split.get(text)
            if got is None:
                got = split[text] = tuple(x for x in text.split(";") if x)
            out[int(rid)] = RatingState(_STATUS.get(st) or Status(st), int(version), got)
        return out

    def insert_many(self, table: Any, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """See :meth:`integrity.ports.UnitOfWork.insert_many`."""
        if not rows:
            return []
        (key,) = table.primary_key.columns
        names = list(rows[0])
        if key.name in names or any(list(r) != names for r in rows):
            raise ValueError("insert_many takes rows of the same columns, without the key")
        dialect = self.connection.dialect
        bind = [(i, table.c[n].type.bind_processor(dialect)) for i, n in enumerate(names)]
        convert = [(i, f) for i, f in bind if f is not None]
        ids = self.ledger._allocate(self.connection, key, len(rows))
        tuples = []
        for rid, row in zip(ids, rows, strict=True):
            values = [rid, *row.values()]
            for i, f in convert:
                values[i + 1] = f(values[i + 1])
            tuples.append(tuple(values))
        self.load(table, [key.name, *names], tuples)
        return ids

    def load(self, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """See :meth:`integrity.ports.UnitOfWork.load`."""
        tracker: _ConfigWrites | None = self.connection.info.get(_TRACKER)
        if tracker is not None and rows and table.name in tracker.tables:
            column = tracker.tables.partition_column(table.name)
            values = None
            if column is not None and column in columns:
                i = list(columns).index(column)
                values = {str(r[i]): r[i] for r in rows}
            tracker.note(self.connection, table.name, values)
        self.ledger.load_rows(self.connection, table, columns, rows)

    def append_many(self, events: Sequence[Event]) -> list[Event]:
        """See :meth:`integrity.ports.UnitOfWork.append_many`."""
        if not events:
            return []
        if any(ev.status is not None for ev in events):
            raise ValueError("append_many takes events that change no status")
        _require_ratings(
            self.connection, [ev.rating_id for ev in events if ev.rating_id is not None]
        )
        eids = self._load_events(events)
        return [_with_id(ev, int(eid)) for ev, eid in zip(events, eids, strict=True)]

    def _load_events(self, events: Sequence[Event]) -> list[int]:
        """Insert ``events`` in bulk with ids allocated up front, ascending in the order
        given (the write lock is held: SQLite's, taken by the allocation, or on
        PostgreSQL a sequence), so they load without RETURNING (which SQLite can only do
        a row at a time when the ids must come back in order); their ids."""
        eids = self.ledger._allocate(self.connection, t.events.c.event_id, len(events))
        when = _sqlite_time if self.ledger.dialect == "sqlite" else _same
        rows = []
        last_at: Any = when  # no event's time: the first one is converted
        last_when: Any = None
        for ev, eid in zip(events, eids, strict=True):
            row = _event_row(ev)
            row["event_id"] = eid
            at = row["at"]
            if at is not last_at:  # a batch's events usually share one time
                last_at, last_when = at, when(at)
            row["at"] = last_when
            rows.append(_bulk_event_values(row))
        self.ledger.load_rows(self.connection, t.events, _BULK_EVENT_COLS, rows)
        return eids

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
        eids = self._load_events(todo)  # the status rows are locked (FOR UPDATE) already
        # the status rows: plain driver statements, no SQLAlchemy work per row
        moves = [
            ((ev.status or Status.HELD).value, ";".join(ev.reasons), eid, ev.rating_id)
            for ev, eid in zip(todo, eids, strict=True)
        ]
        name = t.rating_status.name
        if self.dialect == "postgresql":
            cols = list(zip(*moves, strict=True))
            self.connection.exec_driver_sql(
                f"UPDATE {name} AS s SET status = v.status, reasons = v.reasons, "
                "version = s.version + 1, last_event_id = v.eid "
                "FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[]) "
                "AS v(status, reasons, eid, rating_id) WHERE s.rating_id = v.rating_id",
                tuple(list(c) for c in cols),
            )
        else:
            self.connection.exec_driver_sql(
                f"UPDATE {name} SET status = ?, reasons = ?, version = version + 1, "
                "last_event_id = ? WHERE rating_id = ?",
                moves,
            )
        return [_with_id(ev, int(eid)) for ev, eid in zip(todo, eids, strict=True)]


_bulk_event_values = operator.itemgetter(*_BULK_EVENT_COLS)


def _require_ratings(conn: Connection, rating_ids: Iterable[int]) -> None:
    """``NotFound`` naming the first of ``rating_ids`` that is not stored: an event about
    a rating needs the rating (no foreign key checks it, see ``tables.events``)."""
    wanted = {int(i) for i in rating_ids}
    if not wanted:
        return
    r = t.ratings.c
    q = sa.select(r.rating_id).where(id_in(conn.dialect.name, r.rating_id, wanted))
    stored = {int(i) for (i,) in conn.execute(q).cursor.fetchall()}
    if len(stored) != len(wanted):
        raise NotFound(f"no rating {min(wanted - stored)}")


def _with_id(ev: Event, event_id: int) -> Event:
    """``dataclasses.replace(ev, event_id=event_id)``, without its per-call field walk."""
    return Event(
        ev.kind, ev.actor, ev.at, ev.rating_id, ev.status, ev.reasons, ev.rule_set_id,
        ev.evidence, ev.subject, event_id,
    )  # fmt: skip


# _with_id passes every field of Event by position: it must know them all, in order
assert [f.name for f in fields(Event)] == [
    "kind", "actor", "at", "rating_id", "status", "reasons", "rule_set_id", "evidence",
    "subject", "event_id",
]  # fmt: skip


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
        "reasons": _reasons_json(ev.reasons),
        "rule_set_id": ev.rule_set_id,
        "evidence": (
            ev.evidence.text
            if isinstance(ev.evidence, Encoded)
            else canonical_json(dict(ev.evidence))
        ),
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


def _stored(row: Mapping[Any, Any]) -> StoredRating:
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
        client_id=row["client_id"],
    )


def _rating(row: Mapping[Any, Any]) -> Rating:
    """A stored rating row as the domain's :class:`Rating` (with its id)."""
    return Rating(
        ticket_id=row["ticket_id"],
        window_id=row["window_id"],
        staff_id=row["staff_id"],
        service_type=row["service_type"],
        channel=row["channel"],
        served_at=row["served_at"],
        submitted_at=row["submitted_at"],
        submitted_at_given=bool(row["submitted_at_given"]),
        received_at=row["received_at"],
        scores=json.loads(row["scores"]),
        composite=float(row["composite"]),
        comment=row["comment"],
        ip_hash=row["ip_hash"],
        prefix_hash=row["prefix_hash"],
        device_hash=row["device_hash"],
        fingerprint=row["fingerprint"],
        rating_id=int(row["rating_id"]),
    )


def _utc(value: Any) -> datetime:
    """A time as the driver returns it, as :class:`~integrity.sqlkit.UTCDateTime` reads it."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- score columns -------------------------------------------------------------------------


def read_score_columns(conn: Connection) -> dict[str, int | None]:
    """``meta['score_columns']``: each dimension ever written -> its score column slot
    (``None``: beyond :data:`~integrity.adapters.tables.SCORE_SLOTS`)."""
    text = conn.execute(
        sa.select(t.meta.c.value).where(t.meta.c.key == t.SCORE_COLUMNS_KEY)
    ).scalar()
    if not text:
        return {}
    return {str(k): (int(v) if v is not None else None) for k, v in json.loads(text).items()}


def write_score_columns(conn: Connection, slots: Mapping[str, int | None]) -> None:
    """Store the dimension -> slot map (inside the caller's transaction)."""
    value = canonical_json(dict(slots))
    done = conn.execute(
        t.meta.update().where(t.meta.c.key == t.SCORE_COLUMNS_KEY).values(value=value)
    )
    if done.rowcount == 0:
        conn.execute(t.meta.insert(), {"key": t.SCORE_COLUMNS_KEY, "value": value})


def json_score(dimension: str, dialect: str) -> Any:
    """A dimension's score read from a rating's ``scores`` JSON by the database (NULL
    when the rating has no such dimension)."""
    r = t.ratings.c
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return sa.cast(
            sa.func.jsonb_extract_path_text(sa.cast(r.scores, JSONB), sa.literal(dimension)),
            sa.Integer,
        )
    # SQLite: json_each rather than a JSON path, which cannot name every key
    each = sa.func.json_each(r.scores).table_valued("key", "value")
    return sa.select(each.c.value).where(each.c.key == dimension).scalar_subquery()


def score_expr(dimension: str, slots: Mapping[str, int | None], dialect: str) -> Any:
    """A dimension's score as a column expression: its score column, else the JSON."""
    slot = slots.get(dimension)
    if slot is not None:
        return t.ratings.c[_SCORE_COLS[slot - 1]]
    return json_score(dimension, dialect)


def score_column_mismatches(conn: Connection, limit: int = 20) -> list[int]:
    """Ids of ratings (at most ``limit``) whose score columns differ from their sealed
    ``scores`` (what ``ledger verify`` checks: the columns are not in the Merkle leaf)."""
    slots = read_score_columns(conn)
    r = t.ratings.c
    differs = [
        r[_SCORE_COLS[slot - 1]].is_distinct_from(json_score(dim, conn.dialect.name))
        for dim, slot in sorted(slots.items())
        if slot is not None
    ]
    if not differs:
        return []
    q = sa.select(r.rating_id).where(sa.or_(*differs)).order_by(r.rating_id).limit(limit)
    return [int(x) for x in conn.execute(q).scalars()]
