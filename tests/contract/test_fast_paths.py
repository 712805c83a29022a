"""The ingest's fast paths write and read exactly what the SQLAlchemy paths do.

The bulk write (tuples through plain DBAPI ``executemany`` on SQLite, ``COPY`` on
PostgreSQL) stores the same values as one-by-one ``record``; sealing hashes the rows as
the driver returns them into the same leaves ``verify`` recomputes through processed
rows; the caches and conversions agree with what they stand for. On both backends.
"""

from __future__ import annotations

import gc
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import T0, backend_url, make_app, rating, second_backend_url
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from integrity.adapters import tables as t
from integrity.adapters.sql import (
    IDLE_WRITERS,
    _evidence_json,
    _reasons_json,
    _sqlite_time,
    _with_id,
)
from integrity.app import App
from integrity.errors import BackendUnavailable
from integrity.log import _event_query, _leaf_of, _RawLeaves
from integrity.model import Event, Status
from integrity.ports import RatingQuery
from integrity.sqlkit import canonical_json, canonical_object, id_in

_BIND = t.ratings.c.received_at.type._cached_bind_processor(sqlite.dialect())  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> Iterator[App]:
    a = make_app(tmp_path / "home", db_url)
    yield a
    a.close()


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_sqlite_times_are_stored_as_sqlalchemy_stores_them(at: datetime, offset_min: int) -> None:
    assert _sqlite_time(at) == _BIND(at)
    local = at.astimezone(timezone(timedelta(minutes=offset_min)))
    assert _sqlite_time(local) == _BIND(local)
    assert _sqlite_time(None) is None


@given(
    st.lists(st.sampled_from(["rate_limit.device", "duplicate_ticket", "time.too_old"])),
    st.dictionaries(
        st.text(max_size=5), st.one_of(st.text(max_size=5), st.none(), st.integers()), max_size=2
    ),
)
def test_remembered_json_is_canonical_json(reasons: list[str], evidence: dict[str, Any]) -> None:
    for _ in range(2):  # computed, then remembered
        assert _reasons_json(tuple(reasons)) == canonical_json(list(reasons))
        assert _evidence_json(evidence) == canonical_json(dict(evidence))


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=6), _JSON, max_size=6))
def test_object_joined_from_encoded_values_is_canonical_json(value: dict[str, Any]) -> None:
    for _ in range(2):  # keys encoded, then remembered
        parts = {k: canonical_json(v) for k, v in value.items()}
        assert canonical_object(parts) == canonical_json(value)


@given(st.floats())
def test_a_finite_floats_repr_is_its_json(x: float) -> None:
    # the hold writer encodes a risk as ``float.__repr__`` when it is finite
    if x == x and abs(x) != float("inf"):
        assert float.__repr__(x) == canonical_json(x)


@given(st.integers(min_value=1, max_value=2**62))
def test_an_event_given_its_id_is_dataclasses_replace(event_id: int) -> None:
    ev = Event(
        kind="hold", actor="detector", at=datetime(2026, 1, 1, tzinfo=UTC), rating_id=7,
        status=Status.HELD, reasons=("outlier.burst",), rule_set_id="r",
        evidence={"a": 1}, subject="s",
    )  # fmt: skip
    assert _with_id(ev, event_id) == replace(ev, event_id=event_id)


def _values(app: App, query: str) -> list[tuple[Any, ...]]:
    with app.ledger.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(query)]


@pytest.fixture
def twin_url(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[str]:
    request.param = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    yield from second_backend_url(request, tmp_path)


def test_bulk_rows_are_the_rows_record_writes(app: App, tmp_path: Path, twin_url: str) -> None:
    docs = [
        rating(),
        rating(comment='très bien \u2014 "quoted" \\ 满意', staff_id=None),
        rating(omit=("served_at",)),
        rating(submitted_at=(datetime.now(UTC) - timedelta(days=1)).isoformat()),
    ]
    one = [app.validate(d, replay=True) for d in docs]
    (tmp_path / "bulk").mkdir()
    (tmp_path / "bulk" / "secret.key").write_bytes((tmp_path / "home" / "secret.key").read_bytes())
    bulk = make_app(tmp_path / "bulk", twin_url)
    try:
        items = list(bulk.hook.validate_stream(docs, replay=True))
        assert [i.decision.status for i in items if i.decision] == [d.status for d in one]
        cols = "fingerprint, ticket_id, claims_ticket, window_id, staff_id, served_at, "
        cols += "submitted_at, submitted_at_given, occurred_at, scores, composite, comment, "
        cols += "ip_hash, prefix_hash, device_hash, rule_set_id, client_id, score_1, score_5"
        q = f"SELECT {cols} FROM ratings ORDER BY rating_id"
        assert _values(bulk, q) == _values(app, q)
        q = "SELECT e.kind, e.actor, e.status, e.reasons, e.evidence, s.status, s.reasons, "
        q += "s.risk, s.version FROM events e JOIN rating_status s ON s.last_event_id = "
        q += "e.event_id ORDER BY e.event_id"
        assert _values(bulk, q) == _values(app, q)
    finally:
        bulk.close()


def test_bulk_rows_read_back_as_written_on_either_backend(app: App) -> None:
    at = datetime.now(UTC) - timedelta(hours=1)
    docs = [
        rating(comment="été \u2603", submitted_at=at.isoformat()),
        rating(omit=("served_at", "staff_id"), submitted_at=at.replace(microsecond=0).isoformat()),
        rating(submitted_at=at.astimezone(timezone(timedelta(hours=8))).isoformat()),
    ]
    items = list(app.hook.validate_stream(docs, replay=True))
    ids = [i.decision.rating_id for i in items if i.decision]
    stored = app.ledger.find_ratings(RatingQuery(ids=ids))
    for doc, r in zip(docs, stored, strict=True):
        assert r.comment == doc.get("comment")
        assert r.submitted_at == datetime.fromisoformat(doc["submitted_at"]).astimezone(UTC)
        assert r.submitted_at.tzinfo is not None


def test_raw_leaves_are_the_leaves_verify_computes(app: App) -> None:
    for d in (rating(), rating(comment='\u2014 "x" 满意'), rating(omit=("served_at",))):
        app.validate(d)
    list(app.hook.validate_stream([rating(), rating()], replay=True))
    raw = _RawLeaves.of(app.ledger.dialect)
    with app.ledger.engine.begin() as conn:
        if app.ledger.dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        q = _event_query().order_by(t.events.c.event_id)
        fast = [raw.leaf_hash(row) for row in conn.exec_driver_sql(raw.sql(q, conn)).all()]
    with app.ledger.engine.connect() as conn:
        slow = [_leaf_of(row) for row in conn.execute(q).mappings()]
    assert fast == slow
    assert len(slow) >= 5
    app.log.seal(app.clock.now())
    assert app.log.verify(app.clock.now()).ok


def test_raw_leaves_convert_times_from_any_session_zone(app: App) -> None:
    if app.ledger.dialect != "postgresql":
        pytest.skip("PostgreSQL returns timestamptz in the session's zone")
    app.validate(rating())
    raw = _RawLeaves.of("postgresql")
    q = _event_query().order_by(t.events.c.event_id)
    with app.ledger.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'Asia/Shanghai'")
        fast = [raw.leaf_hash(row) for row in conn.exec_driver_sql(raw.sql(q, conn)).all()]
    with app.ledger.engine.connect() as conn:
        slow = [_leaf_of(row) for row in conn.execute(q).mappings()]
    assert fast == slow


def test_the_newest_event_of_a_kind_uses_the_partial_index(app: App) -> None:
    app.validate(rating())
    with app.ledger.engine.connect() as conn:
        if app.ledger.dialect == "sqlite":
            plan = " ".join(
                str(r[-1])
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT max(event_id) FROM events "
                    "WHERE kind = 'venues.loaded' AND kind <> 'decision'"
                )
            )
            assert "ix_events_kind_event_id" in plan
        names = {ix["name"] for ix in sa.inspect(conn).get_indexes("events")}
    assert "ix_events_kind_event_id" in names
    assert app.ledger.last_event_id("decision") == app.ledger.last_event_id()


def test_a_rating_adds_no_entry_to_indexes_no_query_reads(app: App) -> None:
    """Decisions stay out of the subject index (they have none), which events by subject
    still use; the pseudonyms of address and device are not indexed at all."""
    rid = app.validate(rating()).rating_id
    with app.ledger.engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(t.events.c.subject).where(t.events.c.rating_id == rid)
            ).scalar_one()
            is None
        )
        if app.ledger.dialect == "sqlite":
            ddl = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_events_subject'"
            ).scalar_one()
            plan = " ".join(
                str(r[-1])
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT event_id FROM events WHERE subject IN ('a', 'b')"
                )
            )
            assert "ix_events_subject" in plan
        else:
            ddl = conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_events_subject'"
            ).scalar_one()
        assert "subject IS NOT NULL" in ddl.replace("(", "").replace(")", "")
        indexed = {c for ix in sa.inspect(conn).get_indexes("ratings") for c in ix["column_names"]}
    assert not indexed & {"ip_hash", "prefix_hash", "device_hash"}
    assert {"ticket_id", "occurred_at", "window_id"} <= indexed


def test_one_parameter_id_list_selects_what_an_in_list_selects(app: App) -> None:
    for i in range(5):
        app.validate(rating(ticket_id=f"T-IN-{i}"))
    s = t.rating_status.c
    with app.ledger.engine.connect() as conn:
        stored = sorted(int(r) for (r,) in conn.execute(sa.select(s.rating_id)))
        dialect = conn.dialect.name
        # a repeated id, an id with no row, out of order; then none at all
        for wanted in ([stored[3], stored[0], stored[3], 10**9], [], stored):
            got = conn.execute(sa.select(s.rating_id).where(id_in(dialect, s.rating_id, wanted)))
            listed = conn.execute(sa.select(s.rating_id).where(s.rating_id.in_(wanted)))
            assert sorted(int(r) for (r,) in got) == sorted(int(r) for (r,) in listed)
        if dialect == "sqlite":  # each id looked up by the key, not a scan of the table
            q = sa.select(s.rating_id).where(id_in(dialect, s.rating_id, stored))
            sql = str(q.compile(dialect=conn.dialect))
            plan = " ".join(
                str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", ("[1]",))
            )
            assert "SEARCH rating_status" in plan


def test_sealing_in_small_blocks_seals_every_event_in_order(app: App) -> None:
    from integrity.log import MerkleLog

    for _ in range(3):
        app.validate(rating())
    list(app.hook.validate_stream([rating() for _ in range(7)], replay=True))
    log = MerkleLog(app.ledger, block=3)
    sealed = log.seal(app.clock.now())
    assert sealed == app.ledger.last_event_id()  # every event, from the first
    with app.ledger.engine.connect() as conn:
        pairs = conn.exec_driver_sql(
            "SELECT leaf_index, event_id FROM log_leaves ORDER BY leaf_index"
        ).all()
    assert [e for _, e in pairs] == sorted(e for _, e in pairs)
    assert log.seal(app.clock.now()) == 0
    assert log.verify(app.clock.now()).ok


def test_sealing_hashes_blocks_ahead_and_writes_them_in_order(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seal hashes several blocks before it writes the first (so one that waits for the
    write lock has hashed meanwhile): every event still sealed once, in id order, in
    windows of hashed blocks and within them; a limit still stops it early."""
    from integrity import log as log_module
    from integrity.log import MerkleLog

    monkeypatch.setattr(log_module, "HASH_AHEAD", 2)
    list(app.hook.validate_stream([rating() for _ in range(20)], replay=True))
    log = MerkleLog(app.ledger, block=3)
    assert 0 < log.seal(app.clock.now(), limit=4) < 20  # two blocks of three, at most
    list(app.hook.validate_stream([rating() for _ in range(5)], replay=True))
    log.seal(app.clock.now())
    with app.ledger.engine.connect() as conn:
        pairs = conn.exec_driver_sql(
            "SELECT leaf_index, event_id FROM log_leaves ORDER BY leaf_index"
        ).all()
        events = [e for (e,) in conn.exec_driver_sql("SELECT event_id FROM events ORDER BY 1")]
    assert [e for _, e in pairs] == events
    assert log.verify(app.clock.now()).strict_ok


def test_an_event_committed_late_below_the_sealed_ones_is_sealed_next(app: App) -> None:
    """The seal starts above the highest sealed event when every event up to it is
    sealed; an event whose id was taken before that seal but committed after it
    (PostgreSQL's sequences; on SQLite the write lock orders them) is found next."""
    if app.ledger.dialect != "postgresql":
        pytest.skip("ids taken by one transaction and committed after a later one's")
    app.validate(rating())
    app.log.seal(app.clock.now())
    opening = app.ledger.unit_of_work()  # a transaction held open meanwhile
    uow = opening.__enter__()
    try:
        late = uow.append(Event(kind="case.opened", actor="detector", at=T0, subject="w:late"))
        app.validate(rating())  # a higher id, committed first
        assert app.log.seal(app.clock.now()) == 1
        assert (app.ledger.last_event_id() or 0) > (late.event_id or 0)
    finally:
        opening.__exit__(None, None, None)  # commits the lower id now
    assert not app.log.verify(app.clock.now()).strict_ok  # the late one, unsealed
    assert app.log.seal(app.clock.now()) == 1
    assert app.log.verify(app.clock.now()).strict_ok


def test_statistics_refresh_after_a_bulk_load(app: App) -> None:
    list(app.hook.validate_stream([rating() for _ in range(5)], replay=True))
    app.ledger.analyze()  # PostgreSQL: ANALYZE outside any transaction; SQLite: nothing
    assert len(app.ledger.status_changes(0, 100)) == 5


def _closed(raw: Any) -> bool:
    """Whether a driver connection (sqlite3 or psycopg) was closed."""
    if isinstance(raw, sqlite3.Connection):
        try:
            raw.execute("SELECT 1")
        except sqlite3.ProgrammingError:
            return True
        return False
    return bool(raw.closed)


def test_the_live_hooks_writes_keep_their_connections_checked_out(app: App) -> None:
    """The live hook's write takes no connection from the pool each time: it keeps one
    checked out between writes (at most ``IDLE_WRITERS``, for as many concurrent
    writes; beyond them the pool has them back); the engine's dispose closes them, and
    a write after it takes a new one."""
    ledger = app.ledger
    app.validate(rating())  # the first write checks one out and keeps it
    assert len(ledger._writers) == 1
    kept = next(iter(ledger._writers))
    mine = kept.driver_connection
    out = ledger.engine.pool.checkedout()  # type: ignore[attr-defined]
    for _ in range(3):
        assert app.validate(rating()).status is Status.ACCEPTED
        assert list(ledger._writers) == [kept]
    assert ledger.engine.pool.checkedout() == out  # type: ignore[attr-defined]

    many = [ledger._writer() for _ in range(IDLE_WRITERS + 2)]  # as concurrent writes
    raws = [f.driver_connection for f in many]
    assert many[0] is kept
    assert ledger.engine.pool.checkedout() == out + IDLE_WRITERS + 1  # type: ignore[attr-defined]
    for fairy in many:
        ledger._writer_done(fairy)
    assert len(ledger._writers) == IDLE_WRITERS
    assert ledger.engine.pool.checkedout() == out - 1 + IDLE_WRITERS  # type: ignore[attr-defined]
    if ledger.dialect == "postgresql":  # what went back to the pool is as it hands them out
        assert not any(raw.autocommit for raw in raws[IDLE_WRITERS:])

    ledger.engine.dispose()
    assert list(ledger._writers) == [] and _closed(mine)
    assert app.validate(rating()).status is Status.ACCEPTED  # on a new one
    assert next(iter(ledger._writers)).driver_connection is not mine
    with ledger.engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM ratings").scalar()
    assert n == 5


def test_a_kept_connection_that_died_fails_one_write_then_reconnects(app: App) -> None:
    """PostgreSQL: when the server ends the session of a thread's kept connection, that
    write fails (``BackendUnavailable``, nothing written) and the next one connects
    anew."""
    if app.ledger.dialect != "postgresql":
        pytest.skip("a PostgreSQL session ended by the server")
    ledger = app.ledger
    app.validate(rating())
    pid = list(ledger._writers)[-1].driver_connection.info.backend_pid
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar()
    with pytest.raises(BackendUnavailable):
        app.validate(rating())
    assert list(ledger._writers) == []  # not kept
    assert app.validate(rating()).status is Status.ACCEPTED
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM ratings").scalar() == 2


def test_a_forked_child_leaves_the_parents_kept_connections_alone(app: App) -> None:
    """A child forked after live writes (the close's sealer, say) that disposes of its
    engine and collects garbage neither closes nor rolls back the write connections the
    parent keeps: the parent's next write goes on the same one."""
    ledger = app.ledger
    app.validate(rating())
    kept = id(list(ledger._writers)[-1])  # no reference the child would keep alive
    pid = os.fork()
    if pid == 0:  # the child: what adopt() does, then let go of everything it can
        code = 0
        try:
            ledger.engine.dispose(close=False)
            assert list(ledger._writers) == []
            gc.collect()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert app.validate(rating()).status is Status.ACCEPTED
    assert [id(f) for f in ledger._writers] == [kept]
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM ratings").scalar() == 2
