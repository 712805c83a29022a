"""Performance reports and the ratings export (docs/reference.md, Command line), on SQLite and PostgreSQL.

Only counted (accepted) ratings make a score; every group with any rating in the period
appears; a rating belongs to the month of its served_at (else submitted_at) in the rule
set's time zone (Asia/Shanghai).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from factories import backend_url, make_app, rating

from integrity.app import App
from integrity.catalogue import Kind
from integrity.clock import FrozenClock
from integrity.errors import InvalidInput
from integrity.model import DEFAULT_RUBRIC, Event, Status
from integrity.render import render_to_string
from integrity.reports import EXPORT_COLUMNS, Period, export_ratings, performance

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 1, tzinfo=UTC)  # after every rating below: none is "in the future"
OCT_15 = "2026-10-15T10:00:00+08:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    a = make_app(tmp_path / "home", backend_url(request, tmp_path), clock=FrozenClock(NOW))
    yield a
    a.close()


def scores(*values: int) -> dict[str, int]:
    return dict(zip(DEFAULT_RUBRIC.dimensions, values, strict=True))


def add(app: App, **fields: Any) -> int:
    """Ingest one rating (replayed at its own time); returns its id."""
    fields.setdefault("served_at", OCT_15)
    fields.setdefault("submitted_at", fields["served_at"])
    d = app.validate(rating(**fields), replay=True)
    assert not d.replayed
    return d.rating_id


def move(app: App, rid: int, status: Status, reason: str) -> None:
    _, version = app.ledger.current(rid)
    app.ledger.append(
        Event(
            kind={
                Status.HELD: Kind.HOLD,
                Status.VOIDED: Kind.VOID,
                Status.ACCEPTED: Kind.CLEAR,
            }.get(status, Kind.CONFIRM),
            actor="reviewer",
            at=NOW,
            rating_id=rid,
            status=status,
            reasons=(reason,),
        ),
        version,
    )


def by_key(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    out = {r[key]: r for r in rows}
    assert len(out) == len(rows), "a group appears twice"
    return out


def test_score_and_low_score_rate_count_accepted_ratings_only(app: App) -> None:
    add(app, window_id="A", scores=scores(5, 5, 5, 5, 5))
    add(app, window_id="A", scores=scores(1, 3, 3, 5, 4))  # exactly 3.0: not low
    add(app, window_id="A", scores=scores(2, 2, 2, 2, 2))  # low
    held = add(app, window_id="A", scores=scores(1, 1, 1, 1, 1))
    move(app, held, Status.HELD, "outlier.burst")
    voided = add(app, window_id="A", scores=scores(1, 1, 1, 1, 1))
    move(app, voided, Status.VOIDED, "appeal.upheld")
    dup = rating(window_id="A", served_at=OCT_15, submitted_at=OCT_15)
    app.validate(dup, replay=True)
    app.validate({**dup, "scores": scores(1, 1, 1, 1, 1)}, replay=True)  # rejected duplicate
    cleared = add(app, window_id="A", scores=scores(4, 4, 4, 4, 4))
    move(app, cleared, Status.HELD, "outlier.burst")
    move(app, cleared, Status.ACCEPTED, "review.cleared")  # counts again once cleared

    [row] = performance(app.ledger, "window", DEFAULT_RUBRIC)
    assert row["window_id"] == "A"
    assert row["ratings"] == 8
    assert row["counted"] == 5  # 5, 3, 2, dup's first (4.55), cleared 4
    assert row["score"] == pytest.approx((5 + 3 + 2 + 4.55 + 4) / 5)
    assert row["low_scores"] == 1
    assert row["low_score_rate"] == pytest.approx(1 / 5)
    assert (row["held"], row["rejected"], row["voided"]) == (1, 1, 1)


def test_every_group_with_a_rating_appears_even_with_none_counted(app: App) -> None:
    add(app, window_id="A")
    only_held = add(app, window_id="B", scores=scores(1, 1, 1, 1, 1))
    move(app, only_held, Status.HELD, "outlier.burst")
    rows = by_key(performance(app.ledger, "window", DEFAULT_RUBRIC), "window_id")
    assert set(rows) == {"A", "B"}
    b = rows["B"]
    assert (b["ratings"], b["counted"], b["held"]) == (1, 0, 1)
    assert b["score"] is None and b["low_score_rate"] is None
    assert rows["A"]["counted"] == 1 and rows["A"]["score"] == pytest.approx(4.55)
    # the CSV keeps the group, with an empty score
    text = render_to_string(
        performance(app.ledger, "window", DEFAULT_RUBRIC),
        ["window_id", "counted", "score", "low_score_rate"],
        "csv",
    )
    assert list(csv.reader(io.StringIO(text)))[1:] == [
        ["A", "1", "4.550000", "0.000000"],
        ["B", "0", "", ""],
    ]


@pytest.mark.parametrize(
    ("served_at", "submitted_at", "month"),
    [
        # 23:30 on 31 October in Shanghai is 15:30 UTC: October
        ("2026-10-31T23:30:00+08:00", None, "2026-10"),
        # 23:30 UTC on 30 September is 07:30 on 1 October in Shanghai: October
        ("2026-09-30T23:30:00Z", None, "2026-10"),
        # 07:30 on 1 November in Shanghai is still 31 October in UTC: November
        ("2026-11-01T07:30:00+08:00", None, "2026-11"),
        # 15:59:59 UTC on 30 September is 23:59:59 in Shanghai: September
        ("2026-09-30T15:59:59Z", None, "2026-09"),
        # served_at decides even when the rating was given the next month
        ("2026-10-31T22:00:00+08:00", "2026-11-01T09:00:00+08:00", "2026-10"),
        # without served_at, submitted_at decides, in Shanghai time
        (None, "2026-10-31T16:30:00Z", "2026-11"),
        (None, "2026-10-31T15:59:00Z", "2026-10"),
    ],
)
def test_period_is_the_month_of_served_at_in_shanghai(
    app: App, served_at: str | None, submitted_at: str | None, month: str
) -> None:
    assert str(app.core.timezone) == "Asia/Shanghai"
    fields: dict[str, Any] = {"window_id": "P"}
    if served_at:
        fields["served_at"] = served_at
    fields["submitted_at"] = submitted_at or served_at
    d = app.validate(rating(**fields), replay=True)
    assert d.status is Status.ACCEPTED
    for m in ("2026-09", "2026-10", "2026-11"):
        rows = performance(app.ledger, "window", DEFAULT_RUBRIC, Period.month(m, app.core.timezone))
        assert [r["window_id"] for r in rows] == (["P"] if m == month else []), m


def test_period_filters_groups_and_counts(app: App) -> None:
    add(app, window_id="A", served_at="2026-10-02T09:00:00+08:00")
    add(app, window_id="A", served_at="2026-11-02T09:00:00+08:00")
    add(app, window_id="B", served_at="2026-11-03T09:00:00+08:00")
    october = performance(
        app.ledger, "window", DEFAULT_RUBRIC, Period.month("2026-10", app.core.timezone)
    )
    assert [(r["window_id"], r["ratings"]) for r in october] == [("A", 1)]
    everything = by_key(performance(app.ledger, "window", DEFAULT_RUBRIC), "window_id")
    assert everything["A"]["ratings"] == 2 and everything["B"]["ratings"] == 1


def test_period_month_bounds() -> None:
    dec = Period.month("2026-12", SHANGHAI)
    assert dec.start == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert dec.end == datetime(2026, 12, 31, 16, tzinfo=UTC)
    assert dec.end - dec.start == timedelta(days=31)
    assert Period.month("2026-02", ZoneInfo("UTC")).end == datetime(2026, 3, 1, tzinfo=UTC)
    for bad in ("2026-13", "2026-00", "2026/10", "26-10", "October"):
        with pytest.raises(InvalidInput) as info:
            Period.month(bad, SHANGHAI)
        assert info.value.errors[0].field == "period"


def test_unknown_grouping_is_refused(app: App) -> None:
    with pytest.raises(InvalidInput) as info:
        performance(app.ledger, "district", DEFAULT_RUBRIC)
    assert info.value.errors[0].field == "by"


def test_staff_and_service_type_grouping(app: App) -> None:
    add(app, staff_id="S1", service_type="tax", scores=scores(5, 5, 5, 5, 5))
    add(app, staff_id="S1", service_type="social_security", scores=scores(1, 1, 1, 1, 1))
    add(app, staff_id="S2", service_type="tax", scores=scores(3, 3, 3, 3, 3))
    add(app, omit=["staff_id"], service_type="tax", scores=scores(4, 4, 4, 4, 4))
    staff = by_key(performance(app.ledger, "staff", DEFAULT_RUBRIC), "staff_id")
    assert set(staff) == {"S1", "S2", None}
    assert staff["S1"]["counted"] == 2 and staff["S1"]["score"] == pytest.approx(3.0)
    assert staff["S1"]["low_score_rate"] == pytest.approx(0.5)
    assert staff["S2"]["score"] == pytest.approx(3.0) and staff["S2"]["low_scores"] == 0
    assert staff[None]["score"] == pytest.approx(4.0)
    services = by_key(performance(app.ledger, "service_type", DEFAULT_RUBRIC), "service_type")
    assert services["tax"]["counted"] == 3
    assert services["tax"]["score"] == pytest.approx(4.0)
    assert services["social_security"]["low_score_rate"] == 1.0


def test_export_rows_in_order_received(app: App) -> None:
    first = add(app, window_id="A")
    late = add(
        app,
        window_id="B",
        served_at="2026-10-20T12:00:00+08:00",
        submitted_at="2026-10-20T10:00:00+08:00",  # two hours before the service: held
    )
    dup = rating(served_at=OCT_15, submitted_at=OCT_15)
    kept = app.validate(dup, replay=True).rating_id
    rejected = app.validate({**dup, "comment": "again"}, replay=True).rating_id
    voided = add(app, window_id="C", served_at="2026-09-01T09:00:00+08:00")  # earlier month
    move(app, voided, Status.VOIDED, "audit.fabricated")
    app.ledger.set_risk({late: 0.875})

    rows = list(export_ratings(app.ledger))
    assert [r["rating_id"] for r in rows] == [first, late, kept, rejected, voided]
    assert set(EXPORT_COLUMNS) >= {"rating_id", "ticket_id", "status", "counted", "reasons", "risk"}
    got = {r["rating_id"]: (r["status"], r["counted"], r["reasons"], r["risk"]) for r in rows}
    assert got == {
        first: ("accepted", True, "", 0.0),
        late: ("held", False, "time.submitted_before_served", 0.875),
        kept: ("accepted", True, "", 0.0),
        rejected: ("rejected", False, "duplicate_ticket", 0.0),
        voided: ("voided", False, "audit.fabricated", 0.0),
    }

    text = render_to_string(export_ratings(app.ledger), EXPORT_COLUMNS, "csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert list(table[0])[:2] == ["rating_id", "ticket_id"]
    assert [r["rating_id"] for r in table] == [
        str(i) for i in (first, late, kept, rejected, voided)
    ]
    assert [r["counted"] for r in table] == ["true", "false", "true", "false", "false"]
    assert table[1]["risk"] == "0.875000" and table[0]["risk"] == "0.000000"
    assert all(0.0 <= float(r["risk"]) <= 1.0 for r in table)


def test_export_joins_several_reasons_with_semicolons(app: App) -> None:
    rid = add(
        app,
        served_at="2026-12-01T12:00:00+08:00",
        submitted_at="2026-12-01T10:00:00+08:00",  # before the service, hours after receipt
    )
    [row] = [r for r in export_ratings(app.ledger) if r["rating_id"] == rid]
    assert row["status"] == "held"
    assert row["reasons"].split(";") == ["time.submitted_before_served", "time.submitted_in_future"]
