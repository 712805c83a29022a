"""A rating the ledger did not write costs its rater nothing: its rate-limit slots are
given back, on the in-process limiter and on real Redis, whichever way the write failed.

Three ways: the connection dies mid-transaction (``CrashOn``), the database refuses the
insert after the rating row went in (a trigger), or the database does not answer at all
(a hook over an unreachable ledger, sharing the limiter). After the failure the same
device's later honest ratings are decided exactly as if the failed ones had never been
sent; a failed retry of a stored rating leaves its original's slots where they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from factories import backend_url, make_app, rating, rating_counts, serial
from faults import DEAD_PG, DROP_TRIGGER, FAIL_TRIGGER, CrashOn, run_ddl

from integrity.adapters.sql import SqlLedger, make_engine
from integrity.app import App
from integrity.errors import BackendUnavailable
from integrity.hook import ValidationHook
from integrity.model import Status

A, R = Status.ACCEPTED, Status.REJECTED
FAILED = (BackendUnavailable, sa.exc.DBAPIError)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


@pytest.fixture(params=["memory", "redis"])
def app(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[App]:
    if request.param == "memory":
        a = make_app(tmp_path / "home", db_url)
    else:
        url = request.getfixturevalue("redis_url")
        ns = request.getfixturevalue("redis_namespace")
        a = make_app(tmp_path / "home", db_url, url, namespace=ns)
    try:
        yield a
    finally:
        a.close()


@contextmanager
def failing(app: App, mode: str) -> Iterator[ValidationHook]:
    """A hook whose ledger writes fail in ``mode``, sharing ``app``'s gates and limiter."""
    if mode == "unreachable":
        dead = SqlLedger(make_engine(DEAD_PG))
        try:
            yield ValidationHook(dead, app.core, app.hook.gates, app.pseudonymiser, app.clock)
        finally:
            dead.engine.dispose()
    elif mode == "crash":
        with CrashOn(app.ledger.engine, r"(insert\s+into|copy)\s+(ratings|events)") as crash:
            yield app.hook
        assert crash.fired
    elif mode == "refused":
        run_ddl(app, FAIL_TRIGGER[app.ledger.dialect], "rating_status")
        try:
            yield app.hook
        finally:
            run_ddl(app, DROP_TRIGGER[app.ledger.dialect], "rating_status")
    else:
        raise ValueError(mode)


def statuses(decisions: list) -> list[Status]:  # type: ignore[type-arg]
    return [d.status for d in decisions]


@pytest.mark.parametrize("mode", ["crash", "refused", "unreachable"])
def test_live_ratings_that_were_not_written_give_their_slots_back(app: App, mode: str) -> None:
    device = f"dev-{serial()}"
    failed = [rating(device_id=device, window_id=f"F{i}") for i in range(2)]
    before = rating_counts(app.ledger.engine)
    with failing(app, mode) as hook:
        for doc in failed:
            with pytest.raises(FAILED):
                hook.validate(doc)
    assert rating_counts(app.ledger.engine) == before
    # device.burst allows 3 in 10 minutes: as if the two had never been sent, the two
    # retried now and one more pass, and only the fourth is refused
    later = [app.validate(doc) for doc in failed]
    later += [app.validate(rating(device_id=device, window_id=f"W{i}")) for i in range(2)]
    assert statuses(later) == [A, A, A, R], later
    assert later[3].reasons == ("rate_limit.device",)


@pytest.mark.parametrize("mode", ["crash", "unreachable"])
def test_a_failed_retry_leaves_the_slots_of_its_stored_original(app: App, mode: str) -> None:
    device = f"dev-{serial()}"
    first = rating(device_id=device, window_id="W0")
    assert app.validate(first).status is A
    with failing(app, mode) as hook, pytest.raises(FAILED):
        hook.validate(dict(first))
    # the original still holds its slot: two more fit in the burst, the third does not
    later = [app.validate(rating(device_id=device, window_id=f"W{i + 1}")) for i in range(3)]
    assert statuses(later) == [A, A, R], later


@pytest.mark.parametrize("mode", ["crash", "refused", "unreachable"])
@pytest.mark.parametrize("replay", [False, True], ids=["live", "replay"])
def test_a_chunk_that_was_not_written_gives_its_slots_back(
    app: App, mode: str, replay: bool
) -> None:
    device = f"dev-{serial()}"
    chunk = [rating(device_id=device, window_id=f"F{i}") for i in range(3)]
    before = rating_counts(app.ledger.engine)
    with failing(app, mode) as hook, pytest.raises(FAILED):
        list(hook.validate_stream(chunk, replay=replay))
    assert rating_counts(app.ledger.engine) == before
    docs = [*chunk, rating(device_id=device, window_id="W9")]
    later = [i.decision for i in app.hook.validate_stream(docs, replay=replay)]
    assert statuses(later) == [A, A, A, R], later
    assert rating_counts(app.ledger.engine)["ratings"] == before["ratings"] + 4
