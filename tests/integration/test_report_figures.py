"""Performance reports as a supervisor reads them, on SQLite and PostgreSQL: dimension
means, ranks with ties, halls through the service registry, filters, the previous
period, what was excluded and why, the rectify flag, the follow-up extension point,
the export's columns, and the score columns behind it all (written at intake, checked
by verify, backfilled by the migration).

The rule set's time zone is Asia/Shanghai (+08:00).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import backend_url, make_app, rating

from bootstrap import MIGRATION_LOCATIONS
from integrity import migrate
from integrity.adapters import tables as t
from integrity.app import App
from integrity.catalogue import Kind, Reason
from integrity.clock import FrozenClock
from integrity.errors import InvalidInput, PermissionDenied
from integrity.model import DEFAULT_RUBRIC, Event, Status
from integrity.people import People
from integrity.ports import Pending
from integrity.registry import RegistryService, parse_registry
from integrity.reports import Period, Report, ReportRow, ReportService, build_report
from rules.ruleset import default_ruleset_text

NOW = datetime(2027, 2, 1, tzinfo=UTC)  # after every rating below
OCT_15 = "2026-10-15T10:00:00+08:00"
SEP_15 = "2026-09-15T10:00:00+08:00"
DIMS = DEFAULT_RUBRIC.dimensions


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    a = make_app(tmp_path / "home", backend_url(request, tmp_path), clock=FrozenClock(NOW))
    yield a
    a.close()


def scores(*values: int) -> dict[str, int]:
    if len(values) == 1:
        values = values * len(DIMS)
    return dict(zip(DIMS, values, strict=True))


def add(app: App, **fields: Any) -> int:
    """Ingest one rating (replayed at its own time); returns its id."""
    fields.setdefault("served_at", OCT_15)
    fields.setdefault("submitted_at", fields["served_at"])
    d = app.validate(rating(**fields), replay=True)
    assert not d.replayed
    return d.rating_id


def move(app: App, rid: int, status: Status, reason: str) -> None:
    _, version = app.ledger.current(rid)
    kind = {Status.HELD: Kind.HOLD, Status.VOIDED: Kind.VOID, Status.ACCEPTED: Kind.CLEAR}
    app.ledger.append(
        Event(
            kind=kind.get(status, Kind.CONFIRM),
            actor="reviewer",
            at=NOW,
            rating_id=rid,
            status=status,
            reasons=(reason,),
        ),
        version,
    )


def load_registry(app: App, halls: Mapping[str, Sequence[str]]) -> None:
    doc = {
        "halls": [{"hall_id": h} for h in halls],
        "windows": [{"window_id": w, "hall_id": h} for h, ws in halls.items() for w in ws],
    }
    app.get(RegistryService).load(parse_registry(doc), actor="operator")


def report(app: App, by: str = "window", period: str | None = "2026-10", **kw: Any) -> Report:
    svc = app.get(ReportService)
    return svc.report(by, svc.period(period) if period else None, **kw)


def rows_by_key(rep: Report) -> dict[str | None, ReportRow]:
    out = {r.key: r for r in rep.rows}
    assert len(out) == len(rep.rows), "a group appears twice"
    return out


# -- figures -----------------------------------------------------------------------------


def test_dimension_means_count_counted_ratings_only(app: App) -> None:
    add(app, window_id="A", scores=scores(5, 4, 3, 2, 1))
    add(app, window_id="A", scores=scores(3, 4, 5, 2, 3))
    held = add(app, window_id="A", scores=scores(1))
    move(app, held, Status.HELD, "outlier.burst")
    rep = report(app)
    [row] = rep.rows
    assert row.dimensions == {
        "attitude": 4.0,
        "efficiency": 4.0,
        "compliance": 4.0,
        "environment": 2.0,
        "overall": 2.0,
    }
    assert (row.ratings, row.counted, row.held) == (3, 2, 1)
    [rec] = rep.records()
    assert rec["attitude"] == 4.0 and rec["window_id"] == "A"
    assert list(rec) == list(rep.columns)
    assert rep.columns[:2] == ("window_id", "rank")
    assert {"ratings", "counted", "score", "low_score_rate", "low_scores", "held"} <= set(rec)
    assert {"rejected", "voided", "low_rate_lo", "low_rate_hi", "prev_score"} <= set(rec)
    assert {"score_change", "rank_change", "rectify", "top_reasons"} <= set(rec)


def test_ranks_share_ties_and_unranked_groups_come_last(app: App) -> None:
    for w, s in (("W1", 4), ("W2", 5), ("W3", 4), ("W4", 3)):
        add(app, window_id=w, scores=scores(s))
    only_held = add(app, window_id="W0", scores=scores(5))
    move(app, only_held, Status.HELD, "outlier.burst")
    rep = report(app)
    assert [(r.key, r.rank) for r in rep.rows] == [
        ("W2", 1),
        ("W1", 2),
        ("W3", 2),
        ("W4", 4),
        ("W0", None),  # nothing counted: shown, not ranked
    ]
    w0 = rows_by_key(rep)["W0"]
    assert (w0.counted, w0.score, w0.low_score_rate, w0.low_rate_lo) == (0, None, None, None)


def test_staff_ratings_naming_nobody_are_labelled_in_tables_only_and_not_ranked(app: App) -> None:
    add(app, staff_id="S1", scores=scores(3))
    add(app, omit=["staff_id"], scores=scores(5))
    rep = report(app, by="staff")
    assert [(r.key, r.rank) for r in rep.rows] == [("S1", 1), (None, None)]
    assert [r["staff_id"] for r in rep.records()] == ["S1", None]
    assert [r["staff_id"] for r in rep.records(labels=True)] == ["S1", "(no staff named)"]


def test_low_score_rate_interval_and_rectify_need_enough_counted(app: App) -> None:
    # default rule set: rectify above 0.20 with at least 10 counted
    for i in range(10):
        add(app, window_id="BAD", scores=scores(1 if i < 3 else 5))  # 3 of 10 low
    add(app, window_id="FEW", scores=scores(1))  # 1 low of 3: above the mark, too few
    add(app, window_id="FEW", scores=scores(5))
    add(app, window_id="FEW", scores=scores(5))
    for i in range(10):
        add(app, window_id="OK", scores=scores(1 if i < 2 else 5))  # 2 of 10: at the mark
    rows = rows_by_key(report(app))
    bad = rows["BAD"]
    assert (bad.low_scores, bad.low_score_rate, bad.rectify) == (3, pytest.approx(0.3), True)
    assert bad.low_rate_lo == pytest.approx(0.066739, abs=1e-6)
    assert bad.low_rate_hi == pytest.approx(0.652453, abs=1e-6)
    assert rows["FEW"].low_score_rate == pytest.approx(1 / 3) and not rows["FEW"].rectify
    assert rows["OK"].low_score_rate == pytest.approx(0.2) and not rows["OK"].rectify


def test_the_rectify_mark_is_the_rule_sets(tmp_path: Path) -> None:
    text = default_ruleset_text().replace("rectify_min_counted = 10", "rectify_min_counted = 2")
    a = make_app(tmp_path / "h", clock=FrozenClock(NOW), rules_text=text)
    try:
        add(a, window_id="FEW", scores=scores(1))
        add(a, window_id="FEW", scores=scores(5))
        [row] = report(a).rows
        assert row.rectify and report(a).rectify_rule.min_counted == 2
    finally:
        a.close()


def test_excluded_ratings_are_counted_with_their_top_reasons(app: App) -> None:
    kept = rating(window_id="A", served_at=OCT_15, submitted_at=OCT_15)
    app.validate(kept, replay=True)
    app.validate({**kept, "scores": scores(1)}, replay=True)  # rejected: duplicate_ticket
    for reason in ("outlier.burst", "outlier.burst", "outlier.lockstep"):
        move(app, add(app, window_id="A"), Status.HELD, reason)
    move(app, add(app, window_id="A"), Status.VOIDED, Reason.AUDIT_FABRICATED)
    move(app, add(app, window_id="A"), Status.VOIDED, Reason.APPEAL_UPHELD)
    cleared = add(app, window_id="A")
    move(app, cleared, Status.HELD, "outlier.burst")
    move(app, cleared, Status.ACCEPTED, "review.cleared")  # counts; its reason is not an exclusion
    [row] = report(app).rows
    assert (row.ratings, row.counted, row.held, row.rejected, row.voided) == (8, 2, 3, 1, 2)
    assert row.top_reasons == (
        ("outlier.burst", 2),
        ("appeal.upheld", 1),
        ("audit.fabricated", 1),
    )
    [rec] = report(app).records()
    assert rec["top_reasons"] == ["outlier.burst:2", "appeal.upheld:1", "audit.fabricated:1"]


# -- periods -------------------------------------------------------------------------------


def test_previous_period_score_and_rank_changes(app: App) -> None:
    add(app, window_id="A", scores=scores(5), served_at=SEP_15)
    add(app, window_id="B", scores=scores(3), served_at=SEP_15)
    add(app, window_id="A", scores=scores(2))
    add(app, window_id="B", scores=scores(4))
    add(app, window_id="C", scores=scores(3))  # new in October
    rep = report(app)
    assert rep.previous is not None and rep.previous.label == "2026-09"
    rows = rows_by_key(rep)
    b, a, c = rows["B"], rows["A"], rows["C"]
    assert [r.key for r in rep.rows] == ["B", "C", "A"]
    assert (b.rank, b.prev_rank, b.rank_change) == (1, 2, 1)
    assert b.prev_score == pytest.approx(3.0) and b.score_change == pytest.approx(1.0)
    assert (a.rank, a.prev_rank, a.rank_change) == (3, 1, -2)
    assert a.score_change == pytest.approx(-3.0)
    assert (c.prev_score, c.score_change, c.rank_change) == (None, None, None)
    # all time: no previous period
    everything = report(app, period=None)
    assert everything.previous is None
    assert all(r.prev_score is None for r in everything.rows)


@pytest.mark.parametrize(
    ("served_at", "inside", "outside"),
    [
        # 23:30 on 31 December in Shanghai is 15:30 UTC: Q4, and ISO week 2026-W53
        ("2026-12-31T23:30:00+08:00", ["2026-Q4", "2026-W53", "2026-12"], ["2027-Q1"]),
        # 00:30 on 1 January in Shanghai is still 31 December in UTC: Q1, still W53
        ("2027-01-01T00:30:00+08:00", ["2027-Q1", "2026-W53", "2027-01"], ["2026-Q4"]),
        # 16:00 UTC on 30 September is midnight in Shanghai: the first instant of Q4
        ("2026-09-30T16:00:00Z", ["2026-Q4", "2026-W40"], ["2026-Q3", "2026-W39"]),
        # 23:59 on Sunday 25 October in Shanghai: the last minute of W43
        ("2026-10-25T23:59:00+08:00", ["2026-W43"], ["2026-W44"]),
        ("2026-10-26T00:00:00+08:00", ["2026-W44"], ["2026-W43"]),
    ],
)
def test_quarter_and_week_boundaries_in_shanghai(
    app: App, served_at: str, inside: list[str], outside: list[str]
) -> None:
    add(app, window_id="P", served_at=served_at)
    for p in inside:
        assert [r.key for r in report(app, period=p).rows] == ["P"], p
    for p in outside:
        assert report(app, period=p).rows == (), p


def test_a_range_of_days_is_inclusive_and_compared_with_as_many_days_before(app: App) -> None:
    add(app, window_id="A", served_at="2026-10-01T00:00:00+08:00", scores=scores(4))
    add(app, window_id="A", served_at="2026-10-10T23:59:00+08:00", scores=scores(4))
    add(app, window_id="A", served_at="2026-10-11T00:00:00+08:00", scores=scores(1))
    add(app, window_id="A", served_at="2026-09-30T12:00:00+08:00", scores=scores(2))
    svc = app.get(ReportService)
    rep = svc.report("window", svc.period(first="2026-10-01", last="2026-10-10"))
    [row] = rep.rows
    assert row.counted == 2 and row.score == pytest.approx(4.0)
    assert rep.previous is not None and rep.previous.label == "2026-09-21..2026-09-30"
    assert row.prev_score == pytest.approx(2.0)
    with pytest.raises(InvalidInput):
        svc.period("2026-10", first="2026-10-01", last="2026-10-02")
    with pytest.raises(InvalidInput) as info:
        svc.period(first="2026-10-01")
    assert info.value.errors[0].field == "to"


# -- halls and filters -------------------------------------------------------------------


def test_halls_through_the_registry(app: App) -> None:
    add(app, window_id="W1", scores=scores(5), staff_id="S1")
    add(app, window_id="W2", scores=scores(3), staff_id="S1")
    add(app, window_id="W2", scores=scores(4), staff_id="S2")
    add(app, window_id="W3", scores=scores(4), staff_id="S2")
    add(app, window_id="W3", scores=scores(5), staff_id="S2")
    add(app, window_id="WX", scores=scores(2), staff_id="S3")  # a window the registry lacks
    with pytest.raises(InvalidInput) as info:
        report(app, by="hall")
    assert info.value.errors[0].field == "by" and "registry" in info.value.errors[0].message
    load_registry(app, {"H1": ["W1", "W2"], "H2": ["W3"]})

    halls = report(app, by="hall")
    assert [(r.key, r.rank, r.ratings, r.counted) for r in halls.rows] == [
        ("H2", 1, 2, 2),
        ("H1", 2, 3, 3),
        (None, None, 1, 1),  # windows of no known hall: shown, not ranked
    ]
    assert rows_by_key(halls)["H1"].score == pytest.approx(4.0)
    assert rows_by_key(halls)["H2"].score == pytest.approx(4.5)
    assert halls.records(labels=True)[-1]["hall_id"] == "(not in the registry)"
    assert "hall_rank" not in halls.columns

    windows = report(app, by="window")
    assert windows.columns[:4] == ("window_id", "hall_id", "rank", "hall_rank")
    got = {r.key: (r.hall_id, r.rank, r.hall_rank) for r in windows.rows}
    assert got == {
        "W1": ("H1", 1, 1),
        "W3": ("H2", 2, 1),
        "W2": ("H1", 3, 2),
        "WX": (None, 4, None),
    }

    # a staff member's hall is where most of their ratings were given
    staff = {r.key: (r.hall_id, r.rank, r.hall_rank) for r in report(app, by="staff").rows}
    assert staff == {"S2": ("H2", 1, 1), "S1": ("H1", 2, 1), "S3": (None, 3, None)}

    # service types and channels have no hall
    assert "hall_id" not in report(app, by="service_type").columns


def test_filters_keep_the_ratings_at_a_hall_or_a_window(app: App) -> None:
    add(app, window_id="W1", staff_id="S1", scores=scores(5))
    add(app, window_id="W2", staff_id="S1", scores=scores(1))
    add(app, window_id="W3", staff_id="S1", scores=scores(3))
    add(app, window_id="W3", staff_id="S2", scores=scores(4))
    assert [r.key for r in report(app, window="W3").rows] == ["W3"]
    s1 = rows_by_key(report(app, by="staff", window="W3"))["S1"]
    assert (s1.counted, s1.score) == (1, pytest.approx(3.0))
    with pytest.raises(InvalidInput) as info:
        report(app, hall="H1")  # no registry yet
    assert info.value.errors[0].field == "hall"
    load_registry(app, {"H1": ["W1", "W2"], "H2": ["W3"]})
    with pytest.raises(InvalidInput) as info:
        report(app, hall="H9")
    assert "H9" in info.value.errors[0].message
    h1 = report(app, by="staff", hall="H1")
    [row] = h1.rows
    assert (row.key, row.counted, row.score) == ("S1", 2, pytest.approx(3.0))
    assert [r.key for r in report(app, hall="H1").rows] == ["W1", "W2"]
    assert report(app, hall="H1", window="W3").rows == ()  # W3 is not in H1
    assert [r.key for r in report(app, hall="H2", window="W3").rows] == ["W3"]


def test_by_channel_and_service_type(app: App) -> None:
    add(app, channel="kiosk", service_type="tax", scores=scores(5))
    add(app, channel="qr", service_type="tax", scores=scores(3))
    add(app, channel="qr", service_type="permits", scores=scores(4))
    ch = rows_by_key(report(app, by="channel"))
    assert ch["kiosk"].score == pytest.approx(5.0) and ch["qr"].score == pytest.approx(3.5)
    st = rows_by_key(report(app, by="service_type"))
    assert (st["tax"].counted, st["permits"].rank) == (2, 1)


# -- the follow-up extension point ---------------------------------------------------------


class FakeFollowup:
    columns = ("alerts_opened", "overdue")

    def __init__(self) -> None:
        self.asked: list[tuple[str, Period | None, list[str | None]]] = []

    def figures(
        self, by: str, period: Period | None, keys: Sequence[str | None]
    ) -> Mapping[str | None, Mapping[str, Any]]:
        self.asked.append((by, period, list(keys)))
        return {"A": {"alerts_opened": 2, "overdue": 1}}


def test_follow_up_figures_join_the_report_when_wired(app: App) -> None:
    add(app, window_id="A")
    add(app, window_id="B")
    period = Period.parse("2026-10", app.core.timezone)
    bare = build_report(app.ledger, by="window", rubric=app.core.rubric, period=period)
    assert "alerts_opened" not in bare.columns  # not wired: no columns invented
    # the composition root wires the low-score alerts' figures
    wired = report(app).columns
    assert wired[-3:] == ("alerts_opened", "answered_in_24h", "alerts_overdue")
    fake = FakeFollowup()
    rep = build_report(
        app.ledger, by="window", rubric=app.core.rubric, period=period, followup=fake
    )
    assert rep.columns[-2:] == ("alerts_opened", "overdue")
    recs = {r["window_id"]: r for r in rep.records()}
    assert (recs["A"]["alerts_opened"], recs["A"]["overdue"]) == (2, 1)
    assert (recs["B"]["alerts_opened"], recs["B"]["overdue"]) == (None, None)
    assert fake.asked == [("window", period, ["A", "B"])]


# -- export ----------------------------------------------------------------------------------


def test_export_has_dimensions_halls_local_times_and_comments_only_when_asked(app: App) -> None:
    first = add(app, window_id="W1", staff_id="S1", scores=scores(5, 4, 3, 2, 1), comment="slow")
    second = add(
        app,
        window_id="WX",
        omit=["staff_id", "served_at"],
        submitted_at="2026-10-15T02:00:00Z",
        channel="kiosk",
    )
    svc = app.get(ReportService)
    ex = svc.export()
    assert "hall_id" not in ex.columns and "comment" not in ex.columns
    rows = list(ex.rows)
    assert [r["rating_id"] for r in rows] == [first, second]
    r1, r2 = rows
    assert [r1[d] for d in DIMS] == [5, 4, 3, 2, 1]
    assert (r1["window_id"], r1["staff_id"], r1["channel"]) == ("W1", "S1", "qr")
    assert r1["served_at"] == "2026-10-15T10:00:00+08:00"  # the rule set's zone, with offset
    assert r2["served_at"] is None and r2["submitted_at"] == "2026-10-15T10:00:00+08:00"
    assert (r2["staff_id"], r2["channel"]) == (None, "kiosk")
    assert {"rating_id", "ticket_id", "status", "counted", "reasons", "risk"} <= set(ex.columns)

    load_registry(app, {"H1": ["W1"]})
    ex = svc.export(with_comments=True)
    assert ex.columns[:4] == ("rating_id", "ticket_id", "window_id", "hall_id")
    assert ex.columns[-1] == "comment"
    rows = list(ex.rows)
    assert [(r["hall_id"], r["comment"]) for r in rows] == [("H1", "slow"), (None, None)]

    people = People(app.ledger)
    auditor = people.upsert("AU", roles=["auditor"], at=NOW)
    clerk = people.upsert("S9", roles=["staff"], at=NOW)
    reviewer = people.upsert("R1", roles=["reviewer"], at=NOW)
    with pytest.raises(PermissionDenied, match="comments"):
        svc.export(auditor, with_comments=True)
    with pytest.raises(PermissionDenied, match="ratings"):
        svc.export(clerk)
    assert "comment" not in svc.export(auditor).columns
    assert svc.export(reviewer, with_comments=True).columns[-1] == "comment"


# -- the score columns ----------------------------------------------------------------------


def score_columns(app: App) -> dict[int, dict[str, int | None]]:
    with app.ledger.engine.connect() as conn:
        slots = {
            d: s
            for d, s in __import__("json")
            .loads(
                conn.execute(
                    sa.select(t.meta.c.value).where(t.meta.c.key == t.SCORE_COLUMNS_KEY)
                ).scalar_one()
            )
            .items()
        }
        rows = conn.execute(sa.select(t.ratings)).mappings().all()
    return {
        int(r["rating_id"]): {d: r[f"score_{s}"] for d, s in slots.items() if s is not None}
        for r in rows
    }


def test_scores_are_written_to_their_columns_at_intake(app: App) -> None:
    one = add(app, scores=scores(5, 4, 3, 2, 1))
    pend = [
        Pending(
            app.hook.parse(rating(scores=scores(1, 2, 3, 4, 5)), received_at=NOW),
            Status.ACCEPTED,
            (),
            {},
            app.core.rule_set_id,
        )
    ]
    [many] = app.ledger.record_many(pend)
    cols = score_columns(app)
    assert cols[one] == scores(5, 4, 3, 2, 1)
    assert cols[many.rating_id] == scores(1, 2, 3, 4, 5)
    assert app.log.verify(NOW).ok


def test_verify_finds_an_edited_score_column(app: App) -> None:
    rid = add(app, scores=scores(1))
    app.log.seal(NOW)
    with app.ledger.engine.begin() as conn:
        conn.execute(t.ratings.update().where(t.ratings.c.rating_id == rid).values(score_1=5))
    rep = app.log.verify(NOW)
    assert not rep.ok
    assert any(f"rating {rid}: its score columns differ" in p for p in rep.problems)


def test_a_dimension_some_ratings_lack_averages_over_those_that_have_it(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A rubric that gained a dimension: older ratings lack it. Beyond the eight score
    columns, dimensions are read from the JSON: same figures."""
    dims = [f"d{i:02d}" for i in range(10)]
    weights = ", ".join(f"{d} = 1" for d in dims)
    text = default_ruleset_text().replace(
        default_ruleset_text().split("weights = ", 1)[1].split("\n", 1)[0], "{ " + weights + " }"
    )
    a = make_app(tmp_path / "h", clock=FrozenClock(NOW), rules_text=text)
    try:
        assert a.core.rubric.dimensions == tuple(dims)
        full = {d: i % 5 + 1 for i, d in enumerate(dims)}
        parsed = a.hook.parse(rating(scores=full, served_at=OCT_15), received_at=NOW)
        older = replace(
            parsed,
            scores={d: 5 for d in dims[:9]},  # no d09
            fingerprint="f" * 64,
            ticket_id="T-older",
        )
        a.ledger.record_many(
            [Pending(r, Status.ACCEPTED, (), {}, a.core.rule_set_id) for r in (parsed, older)]
        )
        [row] = report(a).rows
        for i, d in enumerate(dims[:9]):
            assert row.dimensions[d] == pytest.approx((i % 5 + 1 + 5) / 2), d
        assert row.dimensions["d09"] == pytest.approx(5.0)  # from the one rating that has it
        with a.ledger.engine.connect() as conn:
            slots = __import__("json").loads(
                conn.execute(
                    sa.select(t.meta.c.value).where(t.meta.c.key == t.SCORE_COLUMNS_KEY)
                ).scalar_one()
            )
        assert sorted(v for v in slots.values() if v is not None) == list(range(1, 9))
        assert [d for d, v in slots.items() if v is None] == ["d08", "d09"]
        assert a.log.verify(NOW).ok
    finally:
        a.close()


def test_the_migration_backfills_the_score_columns(app: App) -> None:
    ids = [add(app, scores=scores(i % 5 + 1, 5, 4, 3, (i + 2) % 5 + 1)) for i in range(7)]
    before = score_columns(app)
    rep = report(app)
    engine = app.ledger.engine
    migrate.downgrade(engine, "0004", MIGRATION_LOCATIONS)
    with engine.connect() as conn:
        cols = {c["name"] for c in sa.inspect(conn).get_columns("ratings")}
        assert not any(c.startswith("score_") for c in cols)
    migrate.upgrade(engine, MIGRATION_LOCATIONS)
    app.ledger._slots = None  # the process's cache predates the downgrade
    assert score_columns(app) == before
    assert set(before) == set(ids)
    assert report(app).rows == rep.rows
    assert app.log.verify(NOW).ok
