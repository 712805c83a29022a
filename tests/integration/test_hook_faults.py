"""Backends that fail: a dead or dying Redis, an unreachable database, a crash mid-write.

A dead Redis must not lose ratings: they are recorded as ``held`` (limiter_unavailable).
A dead database loses nothing either: the caller gets ``BackendUnavailable`` / HTTP 503
and nothing is half-written. The Redis that dies mid-run is a real ``redis-server``
process this module starts on a free port and kills.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import T0, backend_url, bearer, intake_key, make_app, rating, rating_counts
from fastapi.testclient import TestClient
from faults import DEAD_PG, DROP_TRIGGER, FAIL_TRIGGER, CrashOn, run_ddl
from processes import start

from integrity.adapters.sql import SqlLedger, make_engine
from integrity.app import App
from integrity.catalogue import Reason
from integrity.clock import FrozenClock
from integrity.errors import BackendUnavailable
from integrity.hook import ValidationHook
from integrity.http import create_app
from integrity.model import Status

DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path)


def assert_all_held_unavailable(decisions: list[Any]) -> None:
    for d in decisions:
        assert d.status is Status.HELD and not d.counted, d
        assert d.reasons == (Reason.LIMITER_UNAVAILABLE,), d


# -- Redis down -------------------------------------------------------------------------------


def test_dead_redis_holds_every_rating_and_loses_none(db_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path / "home", db_url, DEAD_REDIS)
    try:
        live = [app.validate(rating()) for _ in range(8)]
        stream = [i.decision for i in app.hook.validate_stream([rating() for _ in range(8)])]
        assert_all_held_unavailable(live + stream)
        assert len({d.rating_id for d in live + stream}) == 16
        assert rating_counts(app.ledger.engine) == {
            "ratings": 16,
            "events": 16,
            "rating_status": 16,
        }
        [ev] = app.ledger.events_of(live[0].rating_id)
        assert "rate_limit" in ev.evidence["unavailable"]
        # a duplicate ticket is still caught: that check needs only the ledger
        dup = app.validate(rating(ticket_id=app.ledger.rating(live[0].rating_id).ticket_id))
        assert dup.status is Status.REJECTED and dup.reasons == (Reason.DUPLICATE_TICKET,)
    finally:
        app.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A throwaway ``redis-server`` on ``port`` (no persistence), started and killed at will."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc, out = start(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ]
        )
        out.wait_for("Ready to accept connections", what="redis-server")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisProcess(free_port())
    server.start()
    yield server
    server.kill()


def test_redis_dying_mid_run_holds_then_recovers_after_cooldown(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    clock = FrozenClock(T0)
    app = make_app(tmp_path / "home", limiter_url=redis_process.url, clock=clock)
    try:
        before = [app.validate(rating()) for _ in range(4)]
        assert [d.status for d in before] == [Status.ACCEPTED] * 4

        redis_process.kill()
        during = [app.validate(rating()) for _ in range(6)]
        assert_all_held_unavailable(during)

        redis_process.start()
        # the breaker is open: still held, without waiting on Redis, until the cool-down
        assert_all_held_unavailable([app.validate(rating())])
        clock.advance(app.limiter.breaker.cooldown_s + 1)  # type: ignore[attr-defined]
        after = [app.validate(rating()) for _ in range(3)]
        assert [d.status for d in after] == [Status.ACCEPTED] * 3
        # the limiter really judges again: a device's fourth rating in 10 minutes is refused
        burst = [app.validate(rating(device_id="one-pad", window_id=f"W{i}")) for i in range(4)]
        assert [d.status for d in burst] == [Status.ACCEPTED] * 3 + [Status.REJECTED]
        assert burst[3].reasons == ("rate_limit.device",)

        total = len(before) + len(during) + 1 + len(after) + len(burst)
        assert rating_counts(app.ledger.engine)["ratings"] == total  # none lost
    finally:
        app.close()


# -- database down ----------------------------------------------------------------------------


@pytest.mark.parametrize("dead_url", [DEAD_PG, "sqlite:////nonexistent-dir/ledger.db"])
def test_unreachable_database_is_backend_unavailable_and_http_503(
    tmp_path: Path, dead_url: str
) -> None:
    app = make_app(tmp_path / "home")
    try:
        dead = SqlLedger(make_engine(dead_url))
        hook = ValidationHook(dead, app.core, app.hook.gates, app.pseudonymiser, app.clock)
        with pytest.raises(BackendUnavailable):
            hook.validate(rating())
        with pytest.raises(BackendUnavailable):
            list(hook.validate_stream([rating(), rating()]))

        key = intake_key(app)  # known to the server before its database goes away
        broken = dataclasses.replace(app, ledger=dead, hook=hook)
        with TestClient(create_app(broken, seal_every_s=None), headers=bearer(key)) as client:
            r = client.post("/v1/ratings", json=rating())
            assert r.status_code == 503
            assert "unavailable" in r.json()["detail"]
            assert client.post("/v1/ratings:batch", json=[rating()]).status_code == 503
            health = client.get("/healthz")
            assert health.status_code == 503 and health.json()["ledger"] == "unavailable"
        dead.engine.dispose()
    finally:
        app.close()


# -- a crash between the rating insert and the commit ----------------------------------------


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> Iterator[App]:
    a = make_app(tmp_path / "home", db_url)
    yield a
    a.close()


@pytest.mark.parametrize("path", ["validate", "stream"])
def test_crash_before_commit_leaves_nothing(app: App, path: str) -> None:
    docs = [rating(), rating(), rating()]
    before = rating_counts(app.ledger.engine)
    crash = CrashOn(app.ledger.engine, r"(insert\s+into|copy)\s+events")
    try:
        with pytest.raises(BackendUnavailable):
            if path == "validate":
                app.validate(docs[0])
            else:
                list(app.hook.validate_stream(docs))
    finally:
        crash.remove()
    assert crash.fired >= 1
    assert rating_counts(app.ledger.engine) == before
    # nothing half-written stands in the way of the retry
    again = [app.validate(d) for d in docs]
    assert [(d.status, d.replayed) for d in again] == [(Status.ACCEPTED, False)] * 3
    assert rating_counts(app.ledger.engine)["ratings"] == before["ratings"] + 3


@pytest.mark.parametrize(
    ("table", "path"),
    [("events", "validate"), ("rating_status", "validate"), ("rating_status", "stream")],
)
def test_database_failure_after_the_rating_insert_rolls_everything_back(
    app: App, table: str, path: str
) -> None:
    """A failure inside the database itself, after the rating row went in (trigger)."""
    dialect = app.ledger.dialect
    docs = [rating(), rating()]
    before = rating_counts(app.ledger.engine)
    run_ddl(app, FAIL_TRIGGER[dialect], table)
    try:
        with pytest.raises((BackendUnavailable, sa.exc.DBAPIError)) as info:
            if path == "validate":
                app.validate(docs[0])
            else:
                list(app.hook.validate_stream(docs))
        assert "simulated crash" in str(info.value)
    finally:
        run_ddl(app, DROP_TRIGGER[dialect], table)
    assert rating_counts(app.ledger.engine) == before
    assert [app.validate(d).status for d in docs] == [Status.ACCEPTED] * 2
    report = app.log.verify(app.clock.now())
    assert report.ok, report.problems
