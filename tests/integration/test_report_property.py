"""The report's SQL figures equal a straightforward Python computation over the same
ratings, for random ledgers (statuses, reasons, times around month ends in Shanghai,
staff named or not, windows in two halls or none), every grouping, with and without
filters, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import backend_url, make_app, rating
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrity.app import App
from integrity.catalogue import Reason
from integrity.clock import FrozenClock
from integrity.model import Status, StoredRating, void_event
from integrity.ports import Pending, RatingQuery
from integrity.registry import Hall, ServiceRegistry, Window
from integrity.reports import Period, RectifyRule, build_report

NOW = datetime(2027, 2, 1, tzinfo=UTC)
REGISTRY = ServiceRegistry(
    halls={"H1": Hall("H1"), "H2": Hall("H2")},
    windows={"W1": Window("W1", "H1"), "W2": Window("W2", "H1"), "W3": Window("W3", "H2")},
    version=1,
)
STATUSES = [
    (Status.ACCEPTED, ()),
    (Status.ACCEPTED, ()),
    (Status.ACCEPTED, ()),
    (Status.HELD, (Reason.OUTLIER_BURST,)),
    (Status.HELD, ("time.submitted_before_served", "time.submitted_in_future")),
    (Status.REJECTED, (Reason.DUPLICATE_TICKET,)),
    (Status.REJECTED, (Reason.RATE_LIMIT_DEVICE,)),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    a = make_app(tmp_path / "home", backend_url(request, tmp_path), clock=FrozenClock(NOW))
    yield a
    a.close()


@st.composite
def ratings(draw: st.DrawFn) -> list[tuple[dict[str, Any], Status, tuple[str, ...], bool]]:
    out = []
    for _ in range(draw(st.integers(0, 14))):
        # around the end of September and of October, Shanghai time
        at = datetime(2026, 9, 30, 16, tzinfo=UTC) + timedelta(
            hours=draw(st.sampled_from([-30, -1, 0, 3, 24 * 20, 24 * 31 - 1, 24 * 31, 24 * 40]))
        )
        doc = rating(
            window_id=draw(st.sampled_from(["W1", "W2", "W3", "W9"])),
            scores={
                d: draw(st.integers(1, 5))
                for d in ("attitude", "efficiency", "compliance", "environment", "overall")
            },
            channel=draw(st.sampled_from(["qr", "kiosk"])),
            served_at=at.isoformat(),
            submitted_at=at.isoformat(),
        )
        staff = draw(st.sampled_from([None, "S1", "S2"]))
        if staff is None:
            doc.pop("staff_id")
        else:
            doc["staff_id"] = staff
        status, reasons = draw(st.sampled_from(STATUSES))
        out.append((doc, status, reasons, draw(st.booleans())))
    return out


def key_of(r: StoredRating, by: str) -> str | None:
    if by == "hall":
        hall = REGISTRY.hall_of(r.window_id)
        return hall.hall_id if hall else None
    return {
        "window": r.window_id,
        "staff": r.staff_id,
        "service_type": r.service_type,
        "channel": r.channel,
    }[by]


def expected(
    all_ratings: list[StoredRating], by: str, period: Period, windows: set[str] | None
) -> dict[str | None, dict[str, Any]]:
    """The figures, computed the obvious way from the ratings themselves."""
    out: dict[str | None, dict[str, Any]] = {}
    groups: dict[str | None, list[StoredRating]] = defaultdict(list)
    for r in all_ratings:
        if period.start <= r.occurred_at < period.end and (
            windows is None or r.window_id in windows
        ):
            groups[key_of(r, by)].append(r)
    for key, rs in groups.items():
        counted = [r for r in rs if r.status is Status.ACCEPTED]
        low = [r for r in counted if r.composite < 3.0]
        reasons: Counter[str] = Counter()
        for r in rs:
            if r.status is not Status.ACCEPTED:
                reasons.update(r.reasons)
        halls: Counter[str] = Counter()
        for r in rs:
            h = REGISTRY.hall_of(r.window_id)
            if h is not None:
                halls[h.hall_id] += 1
        out[key] = {
            "ratings": len(rs),
            "counted": len(counted),
            "score": sum(r.composite for r in counted) / len(counted) if counted else None,
            "low": len(low),
            "held": sum(r.status is Status.HELD for r in rs),
            "rejected": sum(r.status is Status.REJECTED for r in rs),
            "voided": sum(r.status is Status.VOIDED for r in rs),
            "dims": {
                d: (sum(r.scores[d] for r in counted) / len(counted) if counted else None)
                for d in ("attitude", "efficiency", "compliance", "environment", "overall")
            },
            "reasons": reasons,
            "hall": min(halls.items(), key=lambda kv: (-kv[1], kv[0]))[0] if halls else None,
        }
    scored = {k: v["score"] for k, v in out.items() if k is not None and v["score"] is not None}
    for k, v in out.items():
        s = scored.get(k) if k is not None else None
        v["rank"] = None if s is None else 1 + sum(1 for o in scored.values() if o > s + 1e-9)
    return out


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batch=ratings(),
    by=st.sampled_from(["window", "staff", "service_type", "channel", "hall"]),
    filters=st.sampled_from([(None, None), ("H1", None), (None, "W3"), ("H1", "W2")]),
)
def test_sql_figures_equal_a_python_computation(
    app: App,
    batch: list[tuple[dict[str, Any], Status, tuple[str, ...], bool]],
    by: str,
    filters: tuple[str | None, str | None],
) -> None:
    pend = [
        Pending(app.hook.parse(doc, received_at=NOW), status, reasons, {}, app.core.rule_set_id)
        for doc, status, reasons, _ in batch
    ]
    decisions = app.ledger.record_many(pend)
    for d, (_, status, _, void) in zip(decisions, batch, strict=True):
        if void and status is Status.ACCEPTED:
            app.ledger.append(
                void_event(
                    d.rating_id,
                    actor="auditor",
                    at=NOW,
                    reasons=(Reason.AUDIT_FABRICATED,),
                    subject="test",
                    evidence={},
                )
            )
    stored = app.ledger.find_ratings(RatingQuery())  # the whole ledger, examples accumulate
    hall, window = filters
    windows: set[str] | None = None
    if hall is not None:
        windows = set(REGISTRY.windows_of(hall))
    if window is not None:
        windows = {window} if windows is None else windows & {window}
    period = Period.parse("2026-10", app.core.timezone)
    rep = build_report(
        app.ledger,
        by=by,
        rubric=app.core.rubric,
        period=period,
        registry=REGISTRY,
        hall=hall,
        window=window,
        rectify=RectifyRule(0.2, 2),
    )
    want = expected(stored, by, period, windows)
    before = expected(stored, by, period.previous(), windows)
    got = {r.key: r for r in rep.rows}
    assert set(got) == set(want)
    for key, w in want.items():
        r = got[key]
        assert (r.ratings, r.counted, r.low_scores) == (w["ratings"], w["counted"], w["low"])
        assert (r.held, r.rejected, r.voided) == (w["held"], w["rejected"], w["voided"])
        assert r.score == pytest.approx(w["score"])
        for d, v in w["dims"].items():
            assert r.dimensions[d] == pytest.approx(v)
        assert r.rank == w["rank"]
        assert dict(r.top_reasons) == dict(
            sorted(w["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        )
        rate = w["low"] / w["counted"] if w["counted"] else None
        assert r.low_score_rate == pytest.approx(rate)
        assert r.rectify == (rate is not None and w["counted"] >= 2 and rate > 0.2)
        if by in ("window", "staff"):
            assert r.hall_id == w["hall"]
        prev = before.get(key)
        assert r.prev_score == pytest.approx(prev["score"] if prev else None)
        prev_rank = prev["rank"] if prev else None
        assert r.rank_change == (
            prev_rank - r.rank if prev_rank is not None and r.rank is not None else None
        )
    # ordered by rank (unranked last), then key
    order = [(r.rank is None, r.rank or 0, r.key is None, r.key or "") for r in rep.rows]
    assert order == sorted(order)
