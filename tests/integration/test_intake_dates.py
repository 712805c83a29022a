"""Well-dated ratings: a live rating dated long before its receipt is held
(``time.too_old``), and any rating in a closed reporting period is held
(``period.closed``), live or replayed, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from factories import T0, app_on_each_backend, bearer, intake_key, make_app, rating
from fastapi.testclient import TestClient

from integrity.app import App
from integrity.catalogue import Kind, Reason
from integrity.clock import FrozenClock
from integrity.errors import AlreadyExists, InvalidInput
from integrity.http import create_app
from integrity.ingest import ingest
from integrity.model import Status
from integrity.periods import ClosedPeriods, close_period, period_of
from integrity.reports import Period, performance
from rules.ruleset import default_ruleset_text

WEEK = timedelta(days=7)


app = app_on_each_backend()


def at(t: datetime) -> str:
    return t.isoformat()


# -- too old ------------------------------------------------------------------------------


def test_a_live_rating_submitted_or_served_longer_ago_than_max_age_is_held(app: App) -> None:
    old = app.validate(rating(submitted_at=at(T0 - WEEK - timedelta(seconds=1))))
    assert (old.status, old.reasons, old.counted) == (Status.HELD, ("time.too_old",), False)
    [ev] = app.ledger.events_of(old.rating_id)
    assert ev.evidence["too_old"]["seconds_before_receipt"] == {"submitted_at": 604801.0}

    served_long_ago = app.validate(rating(served_at=at(T0 - timedelta(days=30))))
    assert served_long_ago.reasons == ("time.too_old",)

    edge = app.validate(rating(submitted_at=at(T0 - WEEK), served_at=at(T0 - WEEK)))
    assert edge.status is Status.ACCEPTED  # exactly max_age_s old is not too old
    assert app.validate(rating(served_at=at(T0 - timedelta(hours=2)))).status is Status.ACCEPTED


def test_replay_judges_history_at_its_own_time(app: App) -> None:
    docs = [
        rating(
            served_at=at(T0 - timedelta(days=400, minutes=5)),
            submitted_at=at(T0 - timedelta(days=400)),
        )
        for _ in range(3)
    ]
    one = app.validate(docs[0], replay=True)
    assert one.status is Status.ACCEPTED
    summary = ingest(app.hook, docs[1:])
    assert summary.statuses == {"accepted": 2}


def test_a_live_rating_from_years_back_does_not_count_into_that_report(app: App) -> None:
    """The finding: a live rating dated 2020 was accepted and counted into a 2020 report."""
    headers = bearer(intake_key(app))
    with TestClient(create_app(app, seal_every_s=None), headers=headers) as client:
        r = client.post(
            "/v1/ratings", json=rating(window_id="OLD", served_at="2020-03-02T09:00:00+08:00")
        )
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["reasons"]) == ("held", ["time.too_old"])
    [row] = performance(
        app.ledger, "window", app.core.rubric, Period.month("2020-03", app.core.timezone)
    )
    assert (row["window_id"], row["ratings"], row["counted"]) == ("OLD", 1, 0)


def test_max_age_comes_from_the_rule_set(tmp_path: Path) -> None:
    text = default_ruleset_text().replace("max_age_s = 604800", "max_age_s = 3600")
    app = make_app(tmp_path / "home", rules_text=text)
    try:
        assert app.core.max_age_s == 3600
        late = app.validate(rating(submitted_at=at(T0 - timedelta(hours=2))))
        assert late.reasons == ("time.too_old",)
        assert app.validate(rating(submitted_at=at(T0 - timedelta(minutes=50)))).counted
    finally:
        app.close()


# -- closed periods ---------------------------------------------------------------------------


def periods_of(app: App) -> ClosedPeriods:
    return app.get(ClosedPeriods)


def test_closing_a_period_writes_its_row_and_event_in_one_unit_of_work(app: App) -> None:
    periods = periods_of(app)
    closed = close_period(app.ledger, periods.store, "2026-09", at=T0, actor="A1")
    assert (closed.period, closed.closed_by, closed.closed_at) == ("2026-09", "A1", T0)
    [ev] = app.ledger.events_about("period:2026-09")
    assert (ev.kind, ev.actor, ev.event_id) == (Kind.PERIOD_CLOSED, "A1", closed.event_id)
    assert ev.evidence == {"period": "2026-09"}
    assert periods.store.closed() == [closed]
    with pytest.raises(AlreadyExists, match="2026-09 is already closed"):
        close_period(app.ledger, periods.store, "2026-09", at=T0, actor="A2")
    assert len(app.ledger.events_about("period:2026-09")) == 1
    for bad in ("2026-13", "2026-9", "26-09", "september"):
        with pytest.raises(InvalidInput, match="YYYY-MM"):
            close_period(app.ledger, periods.store, bad, at=T0, actor="A1")
    app.log.seal(T0)
    report = app.log.verify(T0)
    assert report.ok, report.problems


def test_ratings_in_a_closed_period_are_held_live_and_replayed(app: App) -> None:
    periods = periods_of(app)
    assert periods.is_closed(T0) is None
    close_period(app.ledger, periods.store, "2026-10", at=T0, actor="A1")
    assert periods.is_closed(T0) is None  # cached until reloaded
    assert app.hook.reload() and not app.hook.reload()
    assert periods.is_closed(T0) == "2026-10"

    live = app.validate(rating())  # received at T0, in October (Shanghai)
    assert (live.status, live.reasons) == (Status.HELD, ("period.closed",))
    [ev] = app.ledger.events_of(live.rating_id)
    assert ev.evidence["period"] == "2026-10"

    # months in the rule set's time zone: 2026-10-31 23:30 in Shanghai is October,
    # 2026-11-01 00:30 is November (replayed a few days later)
    app.clock.advance(timedelta(days=21).total_seconds())  # type: ignore[attr-defined]
    late_oct = datetime(2026, 10, 31, 15, 30, tzinfo=UTC)
    early_nov = datetime(2026, 10, 31, 16, 30, tzinfo=UTC)
    assert period_of(late_oct, app.core.timezone) == "2026-10"
    assert period_of(early_nov, app.core.timezone) == "2026-11"
    replayed = [
        app.validate(rating(served_at=at(late_oct), submitted_at=at(early_nov)), replay=True),
        app.validate(rating(submitted_at=at(early_nov)), replay=True),
        app.validate(rating(submitted_at=at(late_oct)), replay=True),
    ]
    assert [(d.status, d.reasons) for d in replayed] == [
        (Status.HELD, (Reason.PERIOD_CLOSED,)),  # the period of served_at decides
        (Status.ACCEPTED, ()),
        (Status.HELD, (Reason.PERIOD_CLOSED,)),
    ]
    summary = ingest(app.hook, [rating(submitted_at=at(late_oct)) for _ in range(2)])
    assert summary.reasons == {"period.closed": 2}


def test_a_new_instance_reads_the_closed_periods(app: App, tmp_path: Path) -> None:
    close_period(app.ledger, periods_of(app).store, "2026-10", at=T0, actor="A1")
    again = make_app(tmp_path / "home", app.settings.db_url, init=False, clock=FrozenClock(T0))
    try:
        assert periods_of(again).labels == frozenset({"2026-10"})
        assert again.validate(rating()).reasons == ("period.closed",)
    finally:
        again.close()
