"""The score ledger's contract, one suite over SQLite (file) and PostgreSQL (real server).

Record, idempotent retry, duplicate ticket, batch parity with one-by-one, optimistic
concurrency on status events, status derived from events, and the venue registry.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import (
    SCORES,
    T0,
    backend_url,
    make_app,
    rating,
    rating_counts,
    second_backend_url,
    serial,
    valid_ratings,
)
from hypothesis import HealthCheck, given, settings

from integrity.adapters import tables as t
from integrity.adapters.periods import SqlPeriodStore
from integrity.adapters.sql import Pending
from integrity.app import App
from integrity.catalogue import Reason
from integrity.clock import FrozenClock
from integrity.errors import AlreadyExists, BackendUnavailable, Conflict, InvalidInput, NotFound
from integrity.hook import IngestItem
from integrity.model import Event, Status
from integrity.periods import close_period
from integrity.ports import ClockTimes, LowMark
from integrity.venues import pseudonymise_venues


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> Iterator[App]:
    a = make_app(tmp_path / "home", db_url)
    yield a
    a.close()


def status_event(rid: int, status: Status, *reasons: str, actor: str = "detector") -> Event:
    return Event(
        kind={Status.HELD: "hold", Status.ACCEPTED: "clear", Status.VOIDED: "void"}.get(
            status, "confirm"
        ),
        actor=actor,
        at=T0 + timedelta(minutes=5),
        rating_id=rid,
        status=status,
        reasons=reasons,
        evidence={"why": "test"},
    )


# -- record ------------------------------------------------------------------------------


def test_record_writes_rating_decision_event_and_status_row(app: App) -> None:
    doc = rating(comment="fine", served_at="2026-10-15T09:50:00+08:00")
    d = app.validate(doc)
    assert d.status is Status.ACCEPTED and d.counted
    assert d.reasons == () and not d.replayed
    assert d.rule_set_id == app.core.rule_set_id

    [ev] = app.ledger.events_of(d.rating_id)
    assert (ev.kind, ev.actor, ev.status, ev.reasons) == ("decision", "hook", Status.ACCEPTED, ())
    assert ev.rule_set_id == app.core.rule_set_id and ev.at == T0
    assert app.ledger.current(d.rating_id) == (Status.ACCEPTED, 1)

    row = app.ledger.rating(d.rating_id)
    assert row.ticket_id == doc["ticket_id"] and row.claims_ticket is True
    assert row.scores == SCORES and row.status == "accepted"
    assert row.composite == pytest.approx(4.55)
    assert row.comment == "fine" and row.risk == 0.0
    assert row.submitted_at == T0 and row.received_at == T0
    assert row.occurred_at == row.served_at == T0 - timedelta(minutes=10)
    assert rating_counts(app.ledger.engine) == {"ratings": 1, "events": 1, "rating_status": 1}


def test_identical_retry_returns_the_first_decision_and_writes_nothing(app: App) -> None:
    doc = rating()
    first = app.validate(doc)
    app.ledger.append(status_event(first.rating_id, Status.HELD, "outlier.burst"), 1)
    before = rating_counts(app.ledger.engine)
    for replay in (False, True, False):
        again = app.validate(dict(doc), replay=replay)
        assert again.replayed
        # the first decision, not the current status
        assert (again.rating_id, again.status, again.reasons, again.rule_set_id) == (
            first.rating_id,
            Status.ACCEPTED,
            (),
            first.rule_set_id,
        )
    app.clock.advance(3600)  # type: ignore[attr-defined]
    assert app.validate(dict(doc)).rating_id == first.rating_id
    assert rating_counts(app.ledger.engine) == before


def test_different_rating_for_the_same_ticket_is_rejected_duplicate(app: App) -> None:
    doc = rating()
    first = app.validate(doc)
    other = {**doc, "scores": {**SCORES, "overall": 1}, "device_id": "another-device"}
    second = app.validate(other)
    assert second.status is Status.REJECTED and not second.counted
    assert second.reasons == (Reason.DUPLICATE_TICKET,) and second.duplicate_ticket
    assert second.rating_id != first.rating_id and not second.replayed
    assert app.ledger.rating(second.rating_id).claims_ticket is False
    assert app.ledger.current(first.rating_id) == (Status.ACCEPTED, 1)
    # a third version is a duplicate too; an identical retry of the duplicate replays it
    third = app.validate({**doc, "comment": "again"})
    assert third.duplicate_ticket and third.rating_id not in (first.rating_id, second.rating_id)
    retry = app.validate(dict(other))
    assert retry.replayed and retry.rating_id == second.rating_id and retry.duplicate_ticket
    assert rating_counts(app.ledger.engine) == {"ratings": 3, "events": 3, "rating_status": 3}
    with app.ledger.engine.connect() as conn:
        claims = conn.execute(
            sa.select(t.ratings.c.rating_id).where(
                t.ratings.c.ticket_id == doc["ticket_id"], t.ratings.c.claims_ticket.is_(True)
            )
        ).all()
    assert [r.rating_id for r in claims] == [first.rating_id]


@pytest.mark.parametrize(
    "bad", [{"ticket_id": ""}, {"comment": "NUL \x00 in text"}, {"window_id": "W\x00"}]
)
def test_invalid_rating_writes_nothing(app: App, bad: dict[str, Any]) -> None:
    before = rating_counts(app.ledger.engine)
    with pytest.raises(InvalidInput):
        app.validate(rating(**bad))
    assert rating_counts(app.ledger.engine) == before


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # unique per example anyway
)
@given(doc=valid_ratings())
def test_any_rating_that_parses_is_stored_as_given(app: App, doc: dict[str, Any]) -> None:
    doc = {**doc, "ticket_id": f"{doc['ticket_id'][:100]}-{serial()}"}
    parsed = app.hook.parse(doc)
    d = app.validate(doc, replay=True)
    row = app.ledger.rating(d.rating_id)
    for name in ("ticket_id", "window_id", "staff_id", "service_type", "channel", "comment"):
        assert getattr(row, name) == getattr(parsed, name), name
    for name in ("served_at", "submitted_at", "composite", "fingerprint", "ip_hash"):
        assert getattr(row, name) == getattr(parsed, name), name
    assert row.scores == dict(parsed.scores)
    assert app.validate(doc, replay=True).rating_id == d.rating_id
    app.log.seal(app.clock.now())
    report = app.log.verify(app.clock.now())
    assert report.ok, report.problems


def test_record_after_a_lost_race(app: App) -> None:
    """What ``record`` does when a concurrent writer won between lookup and write."""
    doc = rating()
    first = app.validate(doc)
    before = rating_counts(app.ledger.engine)
    # the identical submission was written by someone else: their first decision, replayed
    same = app.hook.parse(dict(doc))
    d = app.ledger.record(Pending(same, Status.ACCEPTED, (), {}, app.core.rule_set_id))
    assert d.replayed and d.rating_id == first.rating_id
    assert rating_counts(app.ledger.engine) == before
    # another rating claimed the ticket: this one is written as a rejected duplicate
    other = app.hook.parse({**doc, "comment": "different"})
    d = app.ledger.record(Pending(other, Status.ACCEPTED, (), {}, app.core.rule_set_id))
    assert d.status is Status.REJECTED and d.reasons == (Reason.DUPLICATE_TICKET,)
    assert app.ledger.events_of(d.rating_id)[0].reasons == (Reason.DUPLICATE_TICKET,)
    assert app.ledger.rating(d.rating_id).claims_ticket is False


def test_record_many_falls_back_one_by_one_on_a_lost_race(app: App) -> None:
    taken = rating()
    first = app.validate(taken)
    docs = [rating(), dict(taken), rating(), {**taken, "comment": "x"}, rating()]
    pending = [
        Pending(app.hook.parse(doc), Status.ACCEPTED, (), {}, app.core.rule_set_id) for doc in docs
    ]
    out = app.ledger.record_many(pending)
    assert [d.status for d in out] == [
        Status.ACCEPTED,
        Status.ACCEPTED,
        Status.ACCEPTED,
        Status.REJECTED,
        Status.ACCEPTED,
    ]
    assert out[1].replayed and out[1].rating_id == first.rating_id
    assert out[3].reasons == (Reason.DUPLICATE_TICKET,)
    assert len({d.rating_id for d in out}) == 5
    assert rating_counts(app.ledger.engine)["ratings"] == 5  # 1 before + 4 new


def test_record_many_fallback_is_one_transaction(app: App) -> None:
    """After a lost race the chunk is written one by one, still all or nothing."""
    taken = rating()
    app.validate(taken)
    docs = [rating(), dict(taken), rating()]
    pending = [
        Pending(app.hook.parse(doc), Status.ACCEPTED, (), {}, app.core.rule_set_id) for doc in docs
    ]
    before = rating_counts(app.ledger.engine)
    third = pending[2].rating.fingerprint

    def fail_third_insert(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        # one by one (a single row's parameters), the third rating's insert fails
        values = params.values() if isinstance(params, dict) else params
        if not many and "INSERT INTO RATINGS" in statement.upper() and third in values:
            raise sa.exc.OperationalError(statement, None, RuntimeError("simulated"))

    sa.event.listen(app.ledger.engine, "before_cursor_execute", fail_third_insert)
    try:
        with pytest.raises(BackendUnavailable):
            app.ledger.record_many(pending)
    finally:
        sa.event.remove(app.ledger.engine, "before_cursor_execute", fail_third_insert)
    assert rating_counts(app.ledger.engine) == before


def test_slot_holders_read_model(app: App) -> None:
    assert app.ledger.latest_decided() == ClockTimes()
    assert app.ledger.recent_slot_holders(ClockTimes(T0, T0)) == []
    old = T0 - timedelta(days=3)
    replayed = [
        app.validate(rating(submitted_at=(old + timedelta(hours=h)).isoformat()), replay=True)
        for h in range(3)
    ]
    live = [app.validate(rating(submitted_at=(old - timedelta(days=1)).isoformat()))]
    live.append(app.validate(rating(ticket_id=app.ledger.rating(live[0].rating_id).ticket_id)))
    assert live[1].reasons == (Reason.DUPLICATE_TICKET,)

    latest = app.ledger.latest_decided()
    assert latest == ClockTimes(replay=old + timedelta(hours=2), live=T0)
    everything = app.ledger.recent_slot_holders(ClockTimes(old - timedelta(days=30), T0))
    assert [h.rating.rating_id for h in everything] == [d.rating_id for d in replayed + live]
    assert [h.replay for h in everything] == [True, True, True, False, False]
    assert everything[4].reasons == (Reason.DUPLICATE_TICKET,)
    stored = app.ledger.rating(replayed[0].rating_id)
    got = everything[0].rating
    assert (got.fingerprint, got.ticket_id, got.device_hash, got.submitted_at, got.received_at) == (
        stored.fingerprint,
        stored.ticket_id,
        stored.device_hash,
        stored.submitted_at,
        stored.received_at,
    )
    # each clock by its own time: replayed by submitted_at, live by received_at
    recent = app.ledger.recent_slot_holders(ClockTimes(replay=old + timedelta(hours=1)))
    assert [h.rating.rating_id for h in recent] == [d.rating_id for d in replayed[1:]]
    only_live = app.ledger.recent_slot_holders(ClockTimes(live=T0))
    assert [h.rating.rating_id for h in only_live] == [d.rating_id for d in live]
    assert app.ledger.recent_slot_holders(ClockTimes(live=T0 + timedelta(seconds=1))) == []


def test_period_store(app: App) -> None:
    store = SqlPeriodStore(app.ledger)
    assert store.closed() == [] and store.version() is None
    with app.ledger.unit_of_work() as uow:
        first = store.close(uow, "2026-09", at=T0, actor="A1", evidence={"report": "abc"})
    second = close_period(app.ledger, store, "2026-08", at=T0, actor="A2")
    assert store.closed() == [second, first]  # oldest label first
    assert store.version() == second.event_id > first.event_id
    assert app.ledger.events([first.event_id])[first.event_id].evidence == {
        "period": "2026-09",
        "report": "abc",
    }
    with pytest.raises(AlreadyExists):
        close_period(app.ledger, store, "2026-09", at=T0, actor="A3")
    # a unit of work that fails leaves neither the row nor the event
    with pytest.raises(RuntimeError), app.ledger.unit_of_work() as uow:
        store.close(uow, "2026-07", at=T0, actor="A1", evidence={})
        raise RuntimeError("the caller's own write failed")
    assert [p.period for p in store.closed()] == ["2026-08", "2026-09"]
    assert app.ledger.events_about("period:2026-07") == []


# -- batch parity --------------------------------------------------------------------------


def parity_sequence() -> list[Any]:
    """Ratings that exercise every path of the hook, replayed at their own times."""
    start = T0 - timedelta(days=2)

    def at(minute: int) -> str:
        return (start + timedelta(minutes=minute)).isoformat()

    a, b = rating(submitted_at=at(0)), rating(submitted_at=at(1))
    dup_a = {**a, "scores": {**SCORES, "attitude": 1}}
    burst = [
        rating(device_id="shared-device", window_id=f"W{i}", submitted_at=at(10 + i))
        for i in range(5)
    ]
    late = rating(submitted_at=at(20), served_at=at(200))  # submitted before served
    future = rating(submitted_at=(T0 + timedelta(hours=1)).isoformat())
    seq: list[Any] = [a, b, dup_a, dict(a), rating(ticket_id="", submitted_at=at(3))]
    seq += [*burst, late, future, rating(submitted_at=at(21)), dict(b)]
    seq += [{**b, "comment": "second try"}, dict(dup_a), "not an object", dict(burst[4])]
    seq += [rating(submitted_at=at(30 + i)) for i in range(4)]
    seq += [dict(a), {**a, "window_id": "W02"}, dict(a)]
    return seq


def outcomes(items: Iterator[IngestItem] | list[IngestItem]) -> list[Any]:
    return [
        (i.line, i.decision, [e.field for e in i.error.errors] if i.error else None) for i in items
    ]


def one_by_one(app: App, seq: list[Any]) -> list[Any]:
    out = []
    for line, obj in enumerate(seq, start=1):
        try:
            out.append(IngestItem(line, decision=app.validate(obj, replay=True)))
        except InvalidInput as err:
            out.append(IngestItem(line, error=err))
    return outcomes(out)


def ledger_dump(app: App) -> list[Any]:
    with app.ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                t.ratings.c.rating_id,
                t.ratings.c.ticket_id,
                t.ratings.c.claims_ticket,
                t.ratings.c.fingerprint,
                t.rating_status.c.status,
                t.rating_status.c.reasons,
                t.events.c.evidence,
            )
            .join(t.rating_status, t.rating_status.c.rating_id == t.ratings.c.rating_id)
            .join(t.events, t.events.c.rating_id == t.ratings.c.rating_id)
            .order_by(t.ratings.c.rating_id)
        ).all()
    return [tuple(r) for r in rows]


def one_ids(app: App) -> dict[int, int]:
    """Each stored rating id → its rank in the order received."""
    with app.ledger.engine.connect() as conn:
        ids = conn.execute(
            sa.select(t.ratings.c.rating_id).order_by(t.ratings.c.rating_id)
        ).scalars()
        return {rid: rank for rank, rid in enumerate(ids, start=1)}


def dense(items: list[Any], rank: dict[int, int]) -> list[Any]:
    return [
        (line, dataclasses.replace(d, rating_id=rank[d.rating_id]) if d else None, err)
        for line, d, err in items
    ]


def dense_dump(rows: list[Any]) -> list[Any]:
    rank = {r[0]: i for i, r in enumerate(rows, start=1)}
    return [(rank[r[0]], *r[1:]) for r in rows]


@pytest.fixture
def twin_url(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[str]:
    request.param = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    yield from second_backend_url(request, tmp_path)


@pytest.mark.parametrize("chunk", [2, 500])
def test_stream_decides_exactly_like_validate_one_by_one(
    db_url: str, twin_url: str, tmp_path: Path, chunk: int
) -> None:
    seq = parity_sequence()
    one = make_app(tmp_path / "one", db_url)
    (tmp_path / "many").mkdir()
    shutil.copy(tmp_path / "one" / "secret.key", tmp_path / "many" / "secret.key")
    many = make_app(tmp_path / "many", twin_url)
    try:
        expected = one_by_one(one, seq)
        got = outcomes(list(many.hook.validate_stream(seq, replay=True, chunk=chunk)))
        # PostgreSQL spends a sequence value on an insert that lost ON CONFLICT, so ids
        # may have gaps; what must agree is the order of the ids, not their values.
        assert dense(got, one_ids(many)) == dense(expected, one_ids(one))
        assert dense_dump(ledger_dump(many)) == dense_dump(ledger_dump(one))
    finally:
        one.close()
        many.close()
    # the sequence really exercises every path
    decisions = [d for _, d, _ in expected if d is not None]
    reasons = {r for d in decisions for r in d.reasons}
    assert {Reason.DUPLICATE_TICKET, "rate_limit.device", Reason.SUBMITTED_IN_FUTURE} <= reasons
    assert Reason.SUBMITTED_BEFORE_SERVED in reasons
    assert sum(d.replayed for d in decisions) >= 5
    assert sum(err is not None for _, _, err in expected) == 2
    assert {d.status for d in decisions} == {Status.ACCEPTED, Status.HELD, Status.REJECTED}


# -- status events ---------------------------------------------------------------------------


def test_append_with_a_stale_version_raises_conflict_and_changes_nothing(app: App) -> None:
    d = app.validate(rating())
    status, version = app.ledger.current(d.rating_id)
    before = rating_counts(app.ledger.engine)
    with pytest.raises(Conflict):
        app.ledger.append(status_event(d.rating_id, Status.HELD, "outlier.burst"), version + 1)
    assert app.ledger.current(d.rating_id) == (status, version)
    assert rating_counts(app.ledger.engine) == before
    assert app.ledger.rating(d.rating_id).reasons == ()

    ev = app.ledger.append(status_event(d.rating_id, Status.HELD, "outlier.burst"), version)
    assert ev.event_id is not None
    assert app.ledger.current(d.rating_id) == (Status.HELD, version + 1)
    assert app.ledger.rating(d.rating_id).reasons == ("outlier.burst",)
    # a second reviewer who read the old version loses
    with pytest.raises(Conflict):
        app.ledger.append(status_event(d.rating_id, Status.ACCEPTED, "cleared"), version)
    assert app.ledger.current(d.rating_id) == (Status.HELD, version + 1)


def test_a_unit_of_work_rolls_back_every_event_on_a_conflict(app: App) -> None:
    a, b = app.validate(rating()), app.validate(rating())
    before = rating_counts(app.ledger.engine)
    with pytest.raises(Conflict), app.ledger.unit_of_work() as uow:
        uow.append(status_event(a.rating_id, Status.VOIDED, "appeal.upheld"), 1)
        uow.append(status_event(b.rating_id, Status.VOIDED, "appeal.upheld"), 7)
    assert app.ledger.current(a.rating_id) == (Status.ACCEPTED, 1)
    assert rating_counts(app.ledger.engine) == before


def test_append_to_a_missing_rating_is_not_found(app: App) -> None:
    before = rating_counts(app.ledger.engine)
    with pytest.raises(NotFound):
        app.ledger.append(status_event(987654, Status.HELD, "x"))
    with pytest.raises(NotFound):
        app.ledger.current(987654)
    # an event about a rating that changes no status: the rating must exist too
    with pytest.raises(NotFound):
        app.ledger.append(Event(kind="appeal.filed", actor="S01", at=T0, rating_id=987654))
    assert rating_counts(app.ledger.engine) == before


def test_append_many_writes_what_append_writes_in_order(app: App) -> None:
    a, b = app.validate(rating()), app.validate(rating())
    events = [
        Event(kind="appeal.filed", actor="S01", at=T0, rating_id=a.rating_id, subject="appeal:1"),
        Event(kind="appeal.filed", actor="S02", at=T0 + timedelta(seconds=1), subject="appeal:2"),
        Event(
            kind="appeal.filed",
            actor="S01",
            at=T0 + timedelta(minutes=5),
            rating_id=b.rating_id,
            reasons=(Reason.DUPLICATE_TICKET,),
            evidence={"note": "tab\there, quote ' and backslash \\"},
        ),
    ]
    with app.ledger.unit_of_work() as uow:
        written = uow.append_many(events)
    ids = [ev.event_id for ev in written]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [dataclasses.replace(ev, event_id=None) for ev in written] == events
    # read back as stored: the same events, times and evidence included
    stored = {ev.event_id: ev for ev in app.ledger.events_about("appeal:1")}
    stored |= {ev.event_id: ev for ev in app.ledger.events_about("appeal:2")}
    stored |= {ev.event_id: ev for ev in app.ledger.events_of(b.rating_id)}
    assert [stored[i] for i in ids] == written
    assert app.ledger.current(a.rating_id) == (Status.ACCEPTED, 1)  # no status moved


def test_append_many_about_a_missing_rating_writes_nothing(app: App) -> None:
    d = app.validate(rating())
    before = rating_counts(app.ledger.engine)
    events = [
        Event(kind="appeal.filed", actor="S01", at=T0, rating_id=d.rating_id),
        Event(kind="appeal.filed", actor="S01", at=T0, rating_id=987654),
    ]
    with pytest.raises(NotFound, match="987654"), app.ledger.unit_of_work() as uow:
        uow.append_many(events)
    assert rating_counts(app.ledger.engine) == before


def test_insert_many_loads_a_package_table_as_statements_would(app: App) -> None:
    """Ids allocated ascending in the order given; each value bound by its column's
    type (aware times come back as they went in); a column left out gets its default."""
    from integrity.sqlkit import Id, UTCDateTime

    md = sa.MetaData()
    notes = sa.Table(
        "test_bulk_notes",
        md,
        sa.Column("note_id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("flag", sa.Boolean, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    md.create_all(app.ledger.engine)
    rows = [
        {"at": T0 + timedelta(microseconds=i * 1001), "flag": i % 2 == 0, "text": text}
        for i, text in enumerate(["plain", None, "tab\tnew\nline \\ 'q'", "ü"])
    ]
    with app.ledger.unit_of_work() as uow:
        first = uow.insert_many(notes, rows[:1])
        rest = uow.insert_many(notes, rows[1:])
        assert uow.insert_many(notes, []) == []
    ids = first + rest
    assert ids == sorted(ids) and len(set(ids)) == 4
    with app.ledger.engine.connect() as conn:
        got = conn.execute(sa.select(notes).order_by(notes.c.note_id)).mappings().all()
    assert [r["note_id"] for r in got] == ids
    assert [{k: r[k] for k in ("at", "flag", "text")} for r in got] == rows
    assert {r["version"] for r in got} == {1}
    with pytest.raises(ValueError), app.ledger.unit_of_work() as uow:
        uow.insert_many(notes, [{"at": T0, "flag": True}, {"at": T0, "text": "x"}])


def test_event_without_status_leaves_the_status_alone(app: App) -> None:
    d = app.validate(rating())
    ev = app.ledger.append(
        Event(kind="appeal.filed", actor="S01", at=T0, rating_id=d.rating_id, subject="appeal:1")
    )
    assert app.ledger.current(d.rating_id) == (Status.ACCEPTED, 1)
    assert [e.event_id for e in app.ledger.events_about("appeal:1")] == [ev.event_id]


def test_event_heads_follow_the_ledger_in_id_order(app: App) -> None:
    """What a reader that follows the ledger (the webhook outbox) gets: ids and kinds."""
    start = app.ledger.last_event_id() or 0
    d = app.validate(rating())
    note = app.ledger.append(Event(kind="case.opened", actor="detector", at=T0, subject="w:1"))
    held = app.ledger.append(status_event(d.rating_id, Status.HELD, "outlier.burst"))
    heads = app.ledger.event_heads(start, 10)
    assert [k for _, k in heads] == ["decision", "case.opened", "hold"]
    assert [i for i, _ in heads][1:] == [note.event_id, held.event_id]
    assert app.ledger.event_heads(start, 2) == heads[:2]
    assert app.ledger.event_heads(heads[0][0], 10, until=note.event_id) == heads[1:2]
    assert app.ledger.event_heads(held.event_id or 0, 10) == []
    assert app.ledger.last_event_id() == held.event_id
    assert app.ledger.last_event_id("case.opened") == note.event_id


def test_status_changes_carry_each_status_events_rating_scores_in_id_order(app: App) -> None:
    """What a reader that follows ratings' status (the low-score alerts) gets."""
    start = app.ledger.last_event_id() or 0
    low = {**SCORES, "attitude": 1}
    d = app.validate(rating(scores=low))
    app.ledger.append(Event(kind="case.opened", actor="detector", at=T0, subject="w:1"))
    held = app.ledger.append(status_event(d.rating_id, Status.HELD, "outlier.burst"))
    changes = app.ledger.status_changes(start, 10)
    assert [(c.kind, c.status, c.rating_id) for c in changes] == [
        ("decision", Status.ACCEPTED, d.rating_id),
        ("hold", Status.HELD, d.rating_id),
    ]
    first, second = changes
    assert (first.actor, first.reasons, dict(first.scores)) == ("hook", (), low)
    assert first.composite == pytest.approx(app.ledger.rating(d.rating_id).composite)
    assert (second.event_id, second.reasons, second.subject) == (
        held.event_id,
        ("outlier.burst",),
        None,
    )
    assert second.at == held.at
    assert app.ledger.status_changes(start, 1) == changes[:1]
    assert app.ledger.status_changes(start, 10, until=first.event_id) == changes[:1]
    assert app.ledger.status_changes(second.event_id, 10) == []
    # rows that share a time, reasons and scores (values converted once per read) each
    # get a map of scores of their own
    again = app.ledger.append(status_event(d.rating_id, Status.HELD, "outlier.burst"))
    one, two = app.ledger.status_changes(first.event_id, 10)[:2]
    assert two.event_id == again.event_id
    assert (one.at, one.reasons, one.scores) == (two.at, two.reasons, two.scores)
    assert one.scores is not two.scores


def test_status_changes_for_a_low_score_reader_are_the_low_and_the_not_accepted(
    app: App,
) -> None:
    """``low``: accepted ratings only when low (composite, or a dimension in its score
    column), every other status always."""
    start = app.ledger.last_event_id() or 0
    high = app.validate(rating(scores={**SCORES, "attitude": 5})).rating_id
    low_dim = app.validate(rating(scores={**SCORES, "overall": 1})).rating_id
    low_composite = app.validate(rating(scores=dict.fromkeys(SCORES, 2))).rating_id
    two = app.validate(rating(scores={**SCORES, "environment": 2})).rating_id
    app.ledger.append(status_event(high, Status.HELD, "outlier.burst"))
    everything = app.ledger.status_changes(start, 100)
    composite_of = {c.rating_id: c.composite for c in everything}
    assert composite_of[low_composite] < 3 <= min(composite_of[i] for i in (high, low_dim, two))

    def seen(mark: LowMark) -> list[tuple[int, Status]]:
        got = app.ledger.status_changes(start, 100, low=mark)
        assert got == [c for c in everything if c in got]  # the same changes, in order
        return [(c.rating_id, c.status) for c in got]

    accepted = Status.ACCEPTED
    assert seen(LowMark(3.0, 1)) == [
        (low_dim, accepted),
        (low_composite, accepted),
        (high, Status.HELD),
    ]
    assert seen(LowMark(3.0, 2)) == [
        (low_dim, accepted),
        (low_composite, accepted),
        (two, accepted),
        (high, Status.HELD),
    ]
    assert seen(LowMark(3.0, 0)) == [(low_composite, accepted), (high, Status.HELD)]
    assert seen(LowMark(1.0, 0)) == [(high, Status.HELD)]


def test_status_changes_for_a_low_score_reader_with_claims_read_other_statuses_of_low_or_claimed(
    app: App,
) -> None:
    """``low.claims``: a status other than accepted only for a rating that is low or
    that a row of the reader's table holds (its flag true)."""
    start = app.ledger.last_event_id() or 0
    claimed = app.validate(rating(scores={**SCORES, "attitude": 5})).rating_id
    released = app.validate(rating(scores={**SCORES, "attitude": 5})).rating_id
    free = app.validate(rating(scores={**SCORES, "attitude": 5})).rating_id
    low = app.validate(rating(scores=dict.fromkeys(SCORES, 2))).rating_id
    claims = sa.Table(
        "claims_of_a_reader",
        sa.MetaData(),
        sa.Column("rating_id", sa.BigInteger, nullable=False),
        sa.Column("holds", sa.Boolean, nullable=False),
    )
    with app.ledger.engine.begin() as conn:
        claims.create(conn)
        conn.execute(
            claims.insert(),
            [{"rating_id": claimed, "holds": True}, {"rating_id": released, "holds": False}],
        )
    for rid in (claimed, released, free, low):
        app.ledger.append(status_event(rid, Status.HELD, "outlier.burst"))
    everything = app.ledger.status_changes(start, 100)
    mark = LowMark(3.0, 1, claims=(claims.name, "holds"))
    got = app.ledger.status_changes(start, 100, low=mark)
    assert got == [c for c in everything if c in got]  # the same changes, in order
    assert [(c.rating_id, c.status) for c in got] == [
        (low, Status.ACCEPTED),
        (claimed, Status.HELD),
        (low, Status.HELD),
    ]
    with pytest.raises(ValueError, match="not a table and column name"):
        app.ledger.status_changes(start, 100, low=LowMark(3.0, 1, claims=("x; --", "holds")))


def test_status_changes_for_a_low_score_reader_read_a_dimension_beyond_the_columns(
    tmp_path: Path, db_url: str
) -> None:
    """A rubric with more dimensions than score columns: the last ones live in the JSON
    only, so a low one there is never filtered out."""
    dims = [f"d{i}" for i in range(1, t.SCORE_SLOTS + 3)]
    weights = ", ".join(f"{d} = 1" for d in dims)
    rules = (
        f'name = "wide"\ntimezone = "UTC"\n[rubric]\nscale = [1, 5]\nweights = {{ {weights} }}\n'
    )
    # activated after the default rule set the ledger may have (the later one is active)
    later = FrozenClock(T0 + timedelta(seconds=1))
    with make_app(tmp_path / "wide", db_url, rules_text=rules, clock=later) as app:
        start = app.ledger.last_event_id() or 0
        scores = dict.fromkeys(dims, 5)
        high = app.validate(rating(scores=scores)).rating_id
        # slots go to dimensions in name order: the last name has none
        last_low = app.validate(rating(scores={**scores, max(dims): 1})).rating_id
        assert app.ledger.score_slots(dims)[max(dims)] is None
        got = app.ledger.status_changes(start, 100, low=LowMark(3.0, 1))
        assert last_low in {c.rating_id for c in got}
        assert {c.rating_id for c in app.ledger.status_changes(start, 100)} == {high, last_low}


def test_status_derived_from_events_equals_rating_status(app: App) -> None:
    ids = [app.validate(rating()).rating_id for _ in range(6)]
    plan = [
        (0, Status.HELD),
        (0, Status.ACCEPTED),
        (1, Status.HELD),
        (1, Status.REJECTED),
        (2, Status.VOIDED),
        (3, Status.HELD),
        (0, Status.VOIDED),
        (3, Status.ACCEPTED),
    ]
    for i, status in plan:
        _, v = app.ledger.current(ids[i])
        reason = {
            Status.HELD: "outlier.burst",
            Status.ACCEPTED: "review.cleared",
            Status.REJECTED: "review.confirmed",
            Status.VOIDED: "appeal.upheld",
        }[status]
        app.ledger.append(status_event(ids[i], status, reason), v)
    for rid in ids:
        status_events = [e for e in app.ledger.events_of(rid) if e.status is not None]
        last = status_events[-1]
        assert app.ledger.current(rid) == (last.status, len(status_events))
        row = app.ledger.rating(rid)
        assert row.status == last.status
        assert row.reasons == tuple(last.reasons)
        with app.ledger.engine.connect() as conn:
            last_id = conn.execute(
                sa.select(t.rating_status.c.last_event_id).where(t.rating_status.c.rating_id == rid)
            ).scalar_one()
        assert last_id == last.event_id
    report = app.log.verify(T0)
    assert report.ok, report.problems


# -- venues ----------------------------------------------------------------------------------

REGISTRY = {
    "venues": [
        {
            "venue_id": "H1",
            "networks": ["198.51.100.7/32", "203.0.113.0/24", "2001:db8:1:2::/64"],
            "kiosk_devices": [{"window_id": "H1-W01", "device_id": "pad-0001"}],
        },
        {"venue_id": "H2", "networks": ["192.0.2.0/23", "2001:db8::99/128"]},
    ]
}


def venue_of(app: App, ip: str) -> str | None:
    return app.ledger.venue_registry().venue_of_address(*app.pseudonymiser.address(ip))


def load(app: App, doc: dict[str, Any]) -> None:
    pv = pseudonymise_venues(doc, app.pseudonymiser)
    app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, T0, actor="test")


def test_venue_registry_replace_and_lookup(app: App) -> None:
    load(app, REGISTRY)
    assert venue_of(app, "198.51.100.7") == "H1"
    assert venue_of(app, "::ffff:198.51.100.7") == "H1"
    assert venue_of(app, "198.51.100.8") is None  # only the /32 is registered
    assert venue_of(app, "203.0.113.200") == "H1"
    assert venue_of(app, "192.0.2.1") == venue_of(app, "192.0.3.254") == "H2"
    assert venue_of(app, "192.0.4.1") is None
    assert venue_of(app, "2001:db8:1:2:abcd::1") == "H1"
    assert venue_of(app, "2001:db8:1:3::1") is None
    assert venue_of(app, "2001:db8::99") == "H2" and venue_of(app, "2001:db8::98") is None
    reg = app.ledger.venue_registry()
    pad = reg.kiosk(app.pseudonymiser.device("pad-0001"))
    assert pad is not None and (pad.venue_id, pad.window_id) == ("H1", "H1-W01")
    assert reg.kiosk(app.pseudonymiser.device("pad-0002")) is None
    [ev] = app.ledger.events_about("venues")
    assert ev.kind == "venues.loaded" and ev.evidence["venues"] == 2 and ev.evidence["kiosks"] == 1

    load(app, {"venues": [{"venue_id": "H3", "networks": ["198.51.100.8/32"]}]})
    assert venue_of(app, "198.51.100.7") is None and venue_of(app, "203.0.113.200") is None
    assert venue_of(app, "198.51.100.8") == "H3"
    assert app.ledger.venue_registry().kiosks == {}
    assert len(app.ledger.events_about("venues")) == 2

    with pytest.raises(InvalidInput) as info:
        pseudonymise_venues(
            {"venues": [{"venue_id": "H4", "networks": ["10.0.0.0/8", "198.51.100.1/24"]}]},
            app.pseudonymiser,
        )
    assert {e.field for e in info.value.errors} == {
        "venues[0].networks[0]",
        "venues[0].networks[1]",
    }
    assert venue_of(app, "198.51.100.8") == "H3"


def test_registered_hall_address_gets_the_venue_limits(app: App) -> None:
    load(app, REGISTRY)
    app.hook.reload()
    hall = [app.validate(rating(ip="198.51.100.7")) for _ in range(25)]
    street = [app.validate(rating(ip="198.51.100.99")) for _ in range(25)]
    assert all(d.status is Status.ACCEPTED for d in hall)
    assert [d.status for d in street] == [Status.ACCEPTED] * 20 + [Status.HELD] * 5
    assert all(d.reasons == ("rate_limit.ip",) for d in street[20:])
