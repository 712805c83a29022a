"""The optimistic hook gives back rate-limit slots a submission should never have held.

The live path runs the gates before the ledger's write settles retries and duplicate
tickets; these tests pin that the limiter then ends exactly as if the duplicate had
been caught first, on the in-process store and on real Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integrity.app import App
from integrity.model import Status
from tests.factories import make_app, rating


@pytest.fixture(params=["memory", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    if request.param == "memory":
        a = make_app(tmp_path, limiter_url="memory://")
    else:
        url = request.getfixturevalue("redis_url")
        ns = request.getfixturevalue("redis_namespace")
        a = make_app(tmp_path, limiter_url=url, namespace=ns)
    try:
        yield a
    finally:
        a.close()


def test_duplicate_ticket_submissions_hold_no_slots(app: App) -> None:
    device = "dup-device"
    first = app.validate(rating(device_id=device, ticket_id="DUP-1", window_id="W1"))
    assert first.status is Status.ACCEPTED
    # five different ratings for the same ticket from the same device: all duplicates
    for attitude in (1, 2, 3, 4, 1):
        scores = {
            "attitude": attitude,
            "efficiency": 4,
            "compliance": 5,
            "environment": 4,
            "overall": 5,
        }
        d = app.validate(rating(device_id=device, ticket_id="DUP-1", window_id="W1", scores=scores))
        assert d.reasons == ("duplicate_ticket",)
    # device.burst allows 3 in 10 minutes: the duplicates used none of them
    more = [app.validate(rating(device_id=device, window_id=f"W{i + 2}")) for i in range(3)]
    assert [d.status for d in more] == [Status.ACCEPTED, Status.ACCEPTED, Status.REJECTED]
    assert more[2].reasons == ("rate_limit.device",)


def test_retry_of_a_rate_limited_rating_gives_its_new_slot_back(app: App) -> None:
    # Replay mode (each rating judged at its own time), so Redis, whose live clock is the
    # server's, sees the same times as the in-process store.
    device = "retry-device"
    at = "2026-10-15T10:0{}:00+08:00"
    docs = [
        rating(device_id=device, window_id=f"W{i}", submitted_at=at.format(i)) for i in range(4)
    ]
    decisions = [app.validate(d, replay=True) for d in docs]
    assert [d.status for d in decisions] == [Status.ACCEPTED] * 3 + [Status.REJECTED]
    # The counters are gone (expired, or Redis was flushed): the retry of the rejected
    # rating now passes the limiter, is answered with its first decision, and must not
    # keep the slot it just took.
    app.limiter.reset()
    again = app.validate(dict(docs[3]), replay=True)
    assert again.replayed and again.status is Status.REJECTED
    assert again.rating_id == decisions[3].rating_id
    fresh = [
        app.validate(
            rating(device_id=device, window_id=f"X{i}", submitted_at=at.format(3)), replay=True
        )
        for i in range(4)
    ]
    assert [d.status for d in fresh] == [Status.ACCEPTED] * 3 + [Status.REJECTED], fresh


def test_retry_of_an_accepted_rating_keeps_its_slot(app: App) -> None:
    device = "kept-device"
    doc = rating(device_id=device, window_id="W1")
    assert app.validate(doc).status is Status.ACCEPTED
    assert app.validate(doc).replayed
    # the original still holds its slot: two more fit, the third does not
    more = [app.validate(rating(device_id=device, window_id=f"W{i + 2}")) for i in range(3)]
    assert [d.status for d in more] == [Status.ACCEPTED, Status.ACCEPTED, Status.REJECTED]
