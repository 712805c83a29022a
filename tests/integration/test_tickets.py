"""Service records against the real ledger (SQLite and PostgreSQL): the ticket gate on and
off, late records lifting or re-stating holds in the same unit of work, settling after
the wait on an injected clock, idempotent recording, one query per chunk on ingest."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import T0, backend_url, make_app, make_settings, rating

from bootstrap import init_instance
from integrity.adapters import tables as t
from integrity.app import App
from integrity.catalogue import Kind, Reason
from integrity.clock import FrozenClock
from integrity.errors import BackendUnavailable
from integrity.http import Background
from integrity.ingest import ingest
from integrity.model import ServiceRecord, Status
from integrity.tickets import ACTOR, TICKETS_LOCK, ServiceRecords
from rules.ruleset import default_ruleset_text

ON = default_ruleset_text().replace("require_known_ticket = false", "require_known_ticket = true")
HOUR = 3600


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


def open_on(tmp_path: Path, db_url: str, text: str = ON) -> App:
    """An instance on ``db_url`` with ``text`` as its active rule set, on a frozen clock."""
    home = tmp_path / "home"
    make_app(home, db_url).close()  # the initialised template (its rule set active at T0)
    later = FrozenClock(T0 + timedelta(minutes=1))  # so that this one is the newer
    init_instance(make_settings(home, db_url), rules_text=text, clock=later)
    return make_app(home, db_url, clock=FrozenClock(T0), init=False)


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[App]:
    a = open_on(tmp_path, db_url)
    yield a
    a.close()


def rec(ticket: str, window: str = "W01", staff: str | None = "S01") -> dict[str, Any]:
    doc: dict[str, Any] = {"ticket_id": ticket, "window_id": window, "served_at": T0.isoformat()}
    if staff is not None:
        doc["staff_id"] = staff
    return doc


def record(app: App, *docs: dict[str, Any]) -> Any:
    return app.get(ServiceRecords).record(list(docs), client_id="queue")


def status(app: App, rating_id: int) -> tuple[Status, tuple[str, ...]]:
    r = app.ledger.rating(rating_id)
    return r.status, r.reasons


def advance(app: App, seconds: float) -> None:
    app.clock.advance(seconds)  # type: ignore[attr-defined]


def test_with_the_setting_off_intake_behaves_as_before(tmp_path: Path, db_url: str) -> None:
    app = make_app(tmp_path / "home", db_url, clock=FrozenClock(T0))
    try:
        d = app.validate(rating(ticket_id="NEVER-ISSUED"))
        assert (d.status, d.reasons) == (Status.ACCEPTED, ())
        record(app, rec("OTHER", window="W09"))
        wrong = app.validate(rating(ticket_id="OTHER", window_id="W01"))
        assert wrong.status is Status.ACCEPTED  # no lookups at all with the setting off
    finally:
        app.close()


def test_an_unknown_ticket_is_held_and_lifted_when_its_record_arrives(app: App) -> None:
    d = app.validate(rating(ticket_id="LATE-1"))
    assert (d.status, d.reasons) == (Status.HELD, (Reason.UNKNOWN_TICKET,))
    advance(app, 5 * HOUR)
    results, done = record(app, rec("LATE-1"))
    assert [r.status for r in results] == ["recorded"]
    assert (done.cleared, done.mismatched, done.still_held) == (1, 0, 0)
    assert status(app, d.rating_id) == (Status.ACCEPTED, (Reason.TICKET_ARRIVED,))
    last = app.ledger.events_of(d.rating_id)[-1]
    assert (last.kind, last.actor, last.status) == (Kind.CLEAR, ACTOR, Status.ACCEPTED)
    assert last.at == T0 + timedelta(hours=5)
    assert last.evidence["ticket"]["arrived"] is True
    assert last.rule_set_id == app.core.rule_set_id
    # and it counts now; sending the record again changes nothing
    assert app.ledger.rating(d.rating_id).counted
    results, done = record(app, rec("LATE-1"))
    assert [r.status for r in results] == ["known"] and done.cleared == 0
    assert len(app.ledger.events_of(d.rating_id)) == 2


def test_a_late_record_naming_another_window_keeps_it_held_as_a_mismatch(app: App) -> None:
    d = app.validate(rating(ticket_id="LATE-2", window_id="W01"))
    _, done = record(app, rec("LATE-2", window="W02"))
    assert done.mismatched == 1
    assert status(app, d.rating_id) == (Status.HELD, (Reason.TICKET_MISMATCH,))
    last = app.ledger.events_of(d.rating_id)[-1]
    assert (last.kind, last.actor) == (Kind.HOLD, ACTOR)
    assert last.evidence["ticket"]["mismatch"] == {"window_id": {"recorded": "W02", "rated": "W01"}}
    # no longer waiting for a record: settling never rejects it
    advance(app, 100 * HOUR)
    assert app.get(ServiceRecords).settle().rejected == 0
    assert status(app, d.rating_id)[0] is Status.HELD


def test_a_late_record_leaves_other_holds_in_place(app: App) -> None:
    served = T0 + timedelta(hours=1)  # submitted an hour before the service ended
    d = app.validate(
        rating(ticket_id="LATE-3", served_at=served.isoformat(), submitted_at=T0.isoformat())
    )
    assert set(d.reasons) == {Reason.UNKNOWN_TICKET, Reason.SUBMITTED_BEFORE_SERVED}
    _, done = record(app, rec("LATE-3"))
    assert done.still_held == 1
    assert status(app, d.rating_id) == (Status.HELD, (Reason.SUBMITTED_BEFORE_SERVED,))


def test_a_rating_contradicting_its_known_ticket_is_held_at_intake(app: App) -> None:
    record(app, rec("K-1", window="W01", staff="S01"), rec("K-2", staff=None))
    assert app.validate(rating(ticket_id="K-1", staff_id="S01")).status is Status.ACCEPTED
    assert app.validate(rating(ticket_id="K-2", staff_id="S05")).status is Status.ACCEPTED
    record(app, rec("K-3"), rec("K-4"), rec("K-5"))
    other_window = app.validate(rating(ticket_id="K-3", window_id="W02"))
    other_staff = app.validate(rating(ticket_id="K-4", staff_id="S02"))
    no_staff = app.validate(rating(ticket_id="K-5", omit=["staff_id"]))
    assert other_window.reasons == (Reason.TICKET_MISMATCH,)
    assert other_staff.reasons == (Reason.TICKET_MISMATCH,)
    assert other_window.status is other_staff.status is Status.HELD
    assert no_staff.status is Status.ACCEPTED


def test_settle_rejects_only_after_the_wait(app: App) -> None:
    svc = app.get(ServiceRecords)
    d = app.validate(rating(ticket_id="GONE-1"))
    advance(app, 71 * HOUR)
    assert svc.settle().rejected == 0
    assert status(app, d.rating_id)[0] is Status.HELD
    advance(app, 1 * HOUR)  # exactly 72 hours after the hold
    assert svc.settle().rejected == 1
    assert status(app, d.rating_id) == (Status.REJECTED, (Reason.UNKNOWN_TICKET,))
    last = app.ledger.events_of(d.rating_id)[-1]
    assert (last.kind, last.actor, last.status) == (Kind.CONFIRM, ACTOR, Status.REJECTED)
    assert last.evidence["ticket"]["wait_hours"] == 72.0
    assert svc.settle().rejected == 0  # once
    # a record arriving after the rejection changes nothing
    _, done = record(app, rec("GONE-1"))
    assert done.cleared == 0 and status(app, d.rating_id)[0] is Status.REJECTED


def test_settle_judges_again_a_rating_whose_record_slipped_past_it(app: App) -> None:
    """A rating written while its record was being loaded (each missed the other) is
    lifted by the next settle round, not rejected."""
    d = app.validate(rating(ticket_id="RACE-1"))
    svc = app.get(ServiceRecords)

    with app.ledger.unit_of_work() as uow:  # the record alone, as the race leaves it
        uow.lock(TICKETS_LOCK)
        svc.store.add(
            uow, [ServiceRecord("RACE-1", "W01", "S01", T0, recorded_at=T0, client_id="q")]
        )
    assert status(app, d.rating_id)[0] is Status.HELD
    assert svc.settle().cleared == 1
    assert status(app, d.rating_id) == (Status.ACCEPTED, (Reason.TICKET_ARRIVED,))


def test_serve_background_round_settles(app: App) -> None:
    d = app.validate(rating(ticket_id="GONE-2"))
    Background(app, 2.0).round()
    assert status(app, d.rating_id)[0] is Status.HELD
    advance(app, 73 * HOUR)
    Background(app, 2.0).round()
    assert status(app, d.rating_id)[0] is Status.REJECTED


def test_records_are_idempotent_and_never_changed(app: App) -> None:
    results, _ = record(
        app,
        rec("R-1"),
        rec("R-1"),  # the same, twice in one request
        rec("R-1", window="W02"),  # a different record for it
        {"ticket_id": "R-2", "window_id": "W01"},  # no served_at
    )
    assert [r.status for r in results] == ["recorded", "known", None, None]
    assert [e.field for e in results[2].error.errors] == ["window_id"]  # type: ignore[union-attr]
    assert [e.field for e in results[3].error.errors] == ["served_at"]  # type: ignore[union-attr]
    later, _ = record(
        app, rec("R-1", staff="S09"), {**rec("R-1"), "served_at": "2026-10-15T10:00:00+08:00"}
    )
    assert later[0].error is not None and [e.field for e in later[0].error.errors] == ["staff_id"]
    assert later[1].status == "known"  # the same instant, written in another offset
    with app.ledger.reading() as conn:
        rows = conn.execute(sa.select(t.service_records)).mappings().all()
    assert [(r["ticket_id"], r["window_id"], r["client_id"]) for r in rows] == [
        ("R-1", "W01", "queue")
    ]


def test_records_and_re_judging_are_one_unit_of_work(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = app.validate(rating(ticket_id="ATOM-1"))
    svc = app.get(ServiceRecords)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailable("the database went away")

    monkeypatch.setattr(svc, "_rejudge", fail)
    with pytest.raises(BackendUnavailable):
        record(app, rec("ATOM-1"))
    assert svc.store.find(["ATOM-1"]) == {}  # the record rolled back with it
    monkeypatch.undo()
    record(app, rec("ATOM-1"))
    assert status(app, d.rating_id)[0] is Status.ACCEPTED


def test_ingest_looks_tickets_up_once_per_chunk_and_live_once_per_rating(app: App) -> None:
    gate = next(g for g in app.hook.gates if g.name == "tickets")
    calls: list[int] = []
    find = gate.store.find  # type: ignore[attr-defined]

    def counting(ids: Sequence[str], uow: Any = None) -> Any:
        calls.append(len(ids))
        return find(ids, uow)

    gate.store.find = counting  # type: ignore[attr-defined]
    record(app, *[rec(f"ING-{i}") for i in range(0, 1200, 2)])
    calls.clear()
    docs = [
        rating(ticket_id=f"ING-{i}", submitted_at=(T0 - timedelta(seconds=1200 - i)).isoformat())
        for i in range(1200)
    ]
    summary = ingest(app.hook, docs, chunk=500)
    assert calls == [500, 500, 200]
    assert summary.statuses == {"accepted": 600, "held": 600}
    assert summary.reasons == {Reason.UNKNOWN_TICKET: 600}
    calls.clear()
    app.validate(rating(ticket_id="ING-0-live"))
    assert calls == [1]


def test_the_ledger_verifies_after_tickets_lift_hold_and_reject(app: App) -> None:
    lifted = app.validate(rating(ticket_id="V-1"))
    mismatched = app.validate(rating(ticket_id="V-2"))
    rejected = app.validate(rating(ticket_id="V-3"))
    record(app, rec("V-1"), rec("V-2", window="W05"))
    advance(app, 73 * HOUR)
    app.get(ServiceRecords).settle()
    assert [status(app, d.rating_id)[0] for d in (lifted, mismatched, rejected)] == [
        Status.ACCEPTED,
        Status.HELD,
        Status.REJECTED,
    ]
    app.log.seal(app.clock.now())
    report = app.log.verify(app.clock.now())
    assert report.ok, report.problems
