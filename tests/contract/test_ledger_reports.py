"""The ledger's report read models (``Ledger.aggregate``, ``Ledger.iter_ratings``) and the
score columns behind them, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from factories import backend_url, make_app, rating

from integrity.adapters.sql import SqlLedger
from integrity.app import App
from integrity.catalogue import Reason
from integrity.clock import FrozenClock
from integrity.model import Status
from integrity.ports import AggregateQuery, Pending, RatingQuery

NOW = datetime(2027, 2, 1, tzinfo=UTC)
DIMS = ("attitude", "efficiency", "compliance", "environment", "overall")


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    a = make_app(tmp_path / "home", backend_url(request, tmp_path), clock=FrozenClock(NOW))
    yield a
    a.close()


def load(app: App, specs: list[tuple[str, str | None, int, Status, tuple[str, ...]]]) -> list[int]:
    pend = []
    for window, staff, score, status, reasons in specs:
        doc = rating(
            window_id=window,
            scores=dict.fromkeys(DIMS, score),
            served_at="2026-10-15T10:00:00+08:00",
            submitted_at="2026-10-15T10:00:00+08:00",
        )
        if staff is None:
            doc.pop("staff_id")
        else:
            doc["staff_id"] = staff
        r = app.hook.parse(doc, received_at=NOW)
        pend.append(Pending(r, status, reasons, {}, app.core.rule_set_id))
    return [d.rating_id for d in app.ledger.record_many(pend)]


def test_aggregate_tallies_by_group_status_and_reasons(app: App) -> None:
    held = (Reason.OUTLIER_BURST,)
    load(
        app,
        [
            ("W1", "S1", 5, Status.ACCEPTED, ()),
            ("W1", "S1", 2, Status.ACCEPTED, ()),
            ("W1", None, 4, Status.ACCEPTED, ()),
            ("W1", "S1", 1, Status.HELD, held),
            ("W1", "S1", 1, Status.HELD, held),
            ("W2", "S2", 3, Status.REJECTED, (Reason.DUPLICATE_TICKET,)),
        ],
    )
    tallies = app.ledger.aggregate(AggregateQuery(by=("window_id",), dimensions=DIMS))
    got = {(t.key, t.status, t.reasons): t for t in tallies}
    assert set(got) == {
        (("W1",), Status.ACCEPTED, ()),
        (("W1",), Status.HELD, ("outlier.burst",)),
        (("W2",), Status.REJECTED, ("duplicate_ticket",)),
    }
    acc = got[(("W1",), Status.ACCEPTED, ())]
    assert (acc.ratings, acc.low, acc.composite_sum) == (3, 1, pytest.approx(11.0))
    assert acc.dimension_sums == dict.fromkeys(DIMS, 11)
    assert acc.dimension_counts == dict.fromkeys(DIMS, 3)
    assert got[(("W1",), Status.HELD, ("outlier.burst",))].ratings == 2

    by_staff = app.ledger.aggregate(AggregateQuery(by=("staff_id", "window_id")))
    keys = {(t.key, t.status) for t in by_staff}
    assert (("S1", "W1"), Status.ACCEPTED) in keys and ((None, "W1"), Status.ACCEPTED) in keys
    assert all(t.dimension_sums == {} for t in by_staff)

    only_w2 = app.ledger.aggregate(AggregateQuery(by=("window_id",), window_ids=("W2",)))
    assert [(t.key, t.ratings) for t in only_w2] == [(("W2",), 1)]
    assert app.ledger.aggregate(AggregateQuery(by=("window_id",), window_ids=())) == []
    before = app.ledger.aggregate(
        AggregateQuery(by=("window_id",), occurred_to=datetime(2026, 10, 1, tzinfo=UTC))
    )
    assert before == []
    with pytest.raises(ValueError):
        app.ledger.aggregate(AggregateQuery(by=("comment",)))


def test_iter_ratings_streams_what_find_ratings_returns(app: App) -> None:
    ids = load(app, [("W1", "S1", s, Status.ACCEPTED, ()) for s in (1, 2, 3, 4, 5)])
    streamed = list(app.ledger.iter_ratings(RatingQuery(), batch=2))
    assert [r.rating_id for r in streamed] == ids
    assert streamed == app.ledger.find_ratings(RatingQuery())
    low = list(app.ledger.iter_ratings(RatingQuery(composite_below=3.0)))
    assert [r.rating_id for r in low] == ids[:2]
    assert list(app.ledger.iter_ratings(RatingQuery(ids=[ids[3]]))) == [app.ledger.rating(ids[3])]


def test_score_slots_are_given_once_and_shared_by_every_ledger(app: App) -> None:
    other = SqlLedger(app.ledger.engine)
    first = dict(app.ledger.score_slots(DIMS))
    assert sorted(first.values()) == [1, 2, 3, 4, 5]
    assert dict(other.score_slots(["overall"])) == first  # read, not assigned again
    more = other.score_slots(["zeal", *DIMS])
    assert more["zeal"] == 6 and {d: more[d] for d in DIMS} == first
    # a ledger whose cache predates "zeal" learns it when it meets it
    assert app.ledger.score_slots(["zeal"])["zeal"] == 6


def test_ratings_by_id_come_in_the_querys_order_and_limit(app: App) -> None:
    ids = load(app, [("W1", "S1", s, Status.ACCEPTED, ()) for s in (1, 2, 3, 4, 5, 1, 2)])
    app.ledger.set_risk(dict(zip(ids, (0.2, 0.9, 0.5, 0.9, 0.1, 0.7, 0.3), strict=True)))
    wanted = [ids[6], ids[0], ids[3], ids[1], ids[3], 10**9]  # out of order, repeated, absent
    every = app.ledger.find_ratings(RatingQuery(order="risk"))
    expected = [r.rating_id for r in every if r.rating_id in set(wanted)]
    got = app.ledger.find_ratings(RatingQuery(ids=wanted, order="risk", limit=3))
    assert [r.rating_id for r in got] == expected[:3] == [ids[1], ids[3], ids[6]]
    assert app.ledger.find_ratings(RatingQuery(ids=[])) == []
