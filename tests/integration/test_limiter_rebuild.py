"""The in-process limiter keeps nothing on disk: an instance rebuilds its counters from
the ledger when it opens, so stopping (or killing) a process and opening the instance
again decides exactly as one uninterrupted process would.

In-process here (two Apps one after the other on one ledger, SQLite and PostgreSQL);
``tests/integration/test_crash_consistency.py`` kills real processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import T0, backend_url, history, make_app, rating, serial

from integrity.app import App
from integrity.catalogue import Reason
from integrity.clock import FrozenClock
from integrity.hook import ValidationHook
from integrity.ingest import ingest
from integrity.model import REPLAY_ACTOR, Status
from integrity.ports import ClockTimes
from rules.ratelimit import MemoryLimiter, RateLimitGate, limiter_from_url
from rules.ratelimit.memory import epoch_ms
from rules.ratelimit.rebuild import holds_slots, horizon, rebuild

A, H, R = Status.ACCEPTED, Status.HELD, Status.REJECTED
DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture
def reopen(db_url: str, tmp_path: Path) -> Callable[[], App]:
    """Open the instance (again): a new process would, on the same home and ledger."""
    opened: list[App] = []
    clock = FrozenClock(T0)

    def open_again() -> App:
        for a in opened:
            a.close()
        app = make_app(tmp_path / "home", db_url, init=not opened, clock=clock)
        opened.append(app)
        return app

    yield open_again  # type: ignore[misc]
    opened[-1].close()


def decisions(app: App) -> list[tuple[str, str, tuple[str, ...]]]:
    with app.ledger.reading() as conn:
        rows = conn.exec_driver_sql(
            "SELECT r.ticket_id, e.status, e.reasons FROM ratings r JOIN events e "
            "ON e.rating_id = r.rating_id AND e.kind = 'decision' ORDER BY r.rating_id"
        ).all()
    return [(t, s, tuple(sorted(json.loads(x)))) for t, s, x in rows]


def burst(app: App, device: str, n: int, *, replay: bool = False, **kw: Any) -> list[Status]:
    return [
        app.validate(rating(device_id=device, window_id=f"B{serial()}", **kw), replay=replay).status
        for _ in range(n)
    ]


def test_a_replay_continued_after_reopening_decides_like_one_run(
    reopen: Callable[[], App], tmp_path: Path
) -> None:
    docs = history(T0 - timedelta(days=3), 1500, seed=11)
    reference = make_app(tmp_path / "reference")
    try:
        ingest(reference.hook, docs)
        want = decisions(reference)
    finally:
        reference.close()
    assert {s for _, s, _ in want} == {"accepted", "rejected"}

    app = reopen()
    ingest(app.hook, docs[:700])
    app = reopen()
    assert isinstance(app.limiter, MemoryLimiter) and app.limiter.size() > 0
    ingest(app.hook, docs[650:1100])  # overlapping: the first 50 are identical retries
    app = reopen()
    ingest(app.hook, docs)
    assert decisions(app) == want


def test_a_live_burst_is_still_limited_after_reopening(reopen: Callable[[], App]) -> None:
    app = reopen()
    device = f"burst-{serial()}"
    assert burst(app, device, 2) == [A, A]
    app = reopen()
    assert burst(app, device, 2) == [A, R]  # device.burst: 3 in 10 minutes


def test_decisions_that_took_no_slot_are_not_restored(reopen: Callable[[], App]) -> None:
    app = reopen()
    device = f"noslot-{serial()}"
    first = rating(device_id=device, window_id="N1")
    assert app.validate(first).status is A
    for attitude in (1, 2):  # other ratings of the same ticket: duplicate_ticket
        dup = rating(device_id=device, ticket_id=first["ticket_id"], window_id="N1")
        dup["scores"] = {**dup["scores"], "attitude": attitude}
        assert app.validate(dup).reasons == (Reason.DUPLICATE_TICKET,)
    dead = limiter_from_url(DEAD_REDIS, namespace="dead", clock=app.clock)
    blind = ValidationHook(
        app.ledger,
        app.core,
        [RateLimitGate(app.rules, dead, namespace=app.settings.namespace)],
        app.pseudonymiser,
        app.clock,
    )
    for _ in range(2):  # written while the limiter did not answer: held, no slot taken
        d = blind.validate(rating(device_id=device, window_id=f"N{serial()}"))
        assert d.reasons == (Reason.LIMITER_UNAVAILABLE,)
    pair = f"pair-{serial()}"  # device_window.day allows 2: the third is refused, no slot
    statuses = [app.validate(rating(device_id=pair, window_id="P1")).status for _ in range(3)]
    assert statuses == [A, A, R]

    app = reopen()
    assert burst(app, device, 3) == [A, A, R]  # only the first one holds a slot
    assert burst(app, pair, 2) == [A, R]


def test_replayed_history_does_not_count_against_todays_live_ratings(
    reopen: Callable[[], App],
) -> None:
    app = reopen()
    device = f"hist-{serial()}"
    day = T0 - timedelta(days=2)
    history_day = [
        rating(
            device_id=device, window_id=f"H{i}", submitted_at=(day + timedelta(hours=i)).isoformat()
        )
        for i in range(8)
    ]
    assert [app.validate(d, replay=True).status for d in history_day] == [A] * 8
    [ev] = app.ledger.events_of(app.validate(history_day[0], replay=True).rating_id)
    assert ev.actor == REPLAY_ACTOR  # which clock judged it is on the ledger

    app = reopen()
    # live, today: that day's eight are on another day and long out of the burst window
    assert burst(app, device, 1) == [A]
    # replay of that day again: device.day (8) is full, as it was before reopening
    late = rating(
        device_id=device, window_id="H9", submitted_at=(day + timedelta(hours=9)).isoformat()
    )
    again = app.validate(late, replay=True)
    assert (again.status, again.reasons) == (R, ("rate_limit.device",))


def test_only_ratings_that_can_still_matter_are_restored(reopen: Callable[[], App]) -> None:
    app = reopen()
    docs = history(T0 - timedelta(days=12), 1500, seed=5)  # about a day of ratings
    docs += history(T0 - timedelta(days=10), 2000, seed=6)  # and a day and a half more
    ingest(app.hook, docs)
    gate = app.hook.gates[0]
    assert isinstance(gate, RateLimitGate)

    latest = app.ledger.latest_decided()
    assert latest.live is None
    newest = max(datetime.fromisoformat(d["submitted_at"]) for d in docs)
    assert latest.replay == newest
    since = horizon(newest, gate)
    local = newest.astimezone(app.core.timezone).date() - timedelta(days=1)
    assert since == datetime.combine(local, time(0), tzinfo=app.core.timezone)

    holders = app.ledger.recent_slot_holders(ClockTimes(replay=since))
    assert holders and all(h.replay and h.rating.submitted_at >= since for h in holders)
    slot_holders = [h for h in holders if holds_slots(h.reasons)]
    assert 0 < len(slot_holders) < len(holders) < len(docs)

    fresh = MemoryLimiter(app.clock, namespace=app.settings.namespace)
    done = rebuild(app.ledger, gate, fresh)
    assert done.ratings == len(slot_holders)
    assert done.entries == fresh.size() > 0
    # entries sit at each rating's own time, the time the replay judged it at
    scores = {s for b in fresh._keys.values() for s, _ in b.entries}
    assert scores <= {epoch_ms(h.rating.submitted_at) for h in slot_holders}
