"""Shared test helpers: rating dicts, wired Apps over a given ledger and limiter, row counts.

Every App built here runs on a :class:`~integrity.clock.FrozenClock` (nothing sleeps) and
keeps its instance home (secret key, embedded files) under a test's ``tmp_path``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from integrity.adapters import tables as t
from integrity.bootstrap import App, Settings, init_instance, open_app
from integrity.clock import FrozenClock

# 2026-10-15 10:00 in Shanghai, the default rule set's time zone.
T0 = datetime(2026, 10, 15, 2, 0, tzinfo=UTC)

SCORES = {"attitude": 5, "efficiency": 4, "compliance": 5, "environment": 4, "overall": 5}

_serial = itertools.count(1)


def serial() -> int:
    """A number unique within the test session."""
    return next(_serial)


def rating(*, omit: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    """A valid intake object (CONTRACT §1) with a fresh ticket, address and device.

    Each call gets its own ticket, its own /24 and its own device, so rate limits never
    trip unless a test shares them on purpose. ``overrides`` replace fields; ``omit``
    drops fields (to test defaults and missing ones).
    """
    n = serial()
    doc: dict[str, Any] = {
        "ticket_id": f"T-{n:07d}",
        "window_id": "W01",
        "staff_id": "S01",
        "service_type": "tax",
        "channel": "qr",
        "scores": dict(SCORES),
        "ip": f"10.{(n >> 8) & 255}.{n & 255}.7",
        "device_id": f"device-{n:07d}",
    }
    doc.update(overrides)
    for name in omit:
        doc.pop(name, None)
    return doc


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_settings(
    home: Path, db_url: str | None = None, limiter_url: str = "memory://", namespace: str = "itest"
) -> Settings:
    return Settings(
        home=home,
        db_url=db_url or sqlite_url(home / "ledger.db"),
        limiter_url=limiter_url,
        secret_file=home / "secret.key",
        namespace=namespace,
    )


def make_app(
    home: Path,
    db_url: str | None = None,
    limiter_url: str = "memory://",
    *,
    clock: FrozenClock | None = None,
    namespace: str = "itest",
    rules_text: str | None = None,
    init: bool = True,
) -> App:
    """Initialise (unless ``init`` is false) and open an instance living in ``home``.

    Two Apps on the same ``home`` share the secret key, like two workers of one
    deployment; ``db_url`` defaults to the embedded SQLite file in ``home``.
    """
    clock = clock or FrozenClock(T0)
    settings = make_settings(home, db_url, limiter_url, namespace)
    if init:
        init_instance(settings, rules_text=rules_text, clock=clock)
    return open_app(settings, clock=clock)


def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ledger URL for a ``sqlite`` / ``postgresql`` fixture parameter."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "ledger.db")
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    raise ValueError(f"unknown backend {request.param!r}")


LEDGER_TABLES = (t.ratings, t.events, t.rating_status)


def counts(engine: sa.Engine) -> dict[str, int]:
    """Row counts of the ledger's rating, event and status tables."""
    with engine.connect() as conn:
        return {
            tbl.name: int(conn.execute(sa.select(sa.func.count()).select_from(tbl)).scalar_one())
            for tbl in LEDGER_TABLES
        }


def rating_counts(engine: sa.Engine) -> dict[str, int]:
    """Like :func:`counts`, but only events about ratings (not rule sets or venues)."""
    with engine.connect() as conn:
        one = conn.execute(sa.select(sa.func.count()).select_from(t.ratings)).scalar_one()
        ev = conn.execute(
            sa.select(sa.func.count()).where(t.events.c.rating_id.is_not(None))
        ).scalar_one()
        st = conn.execute(sa.select(sa.func.count()).select_from(t.rating_status)).scalar_one()
    return {"ratings": int(one), "events": int(ev), "rating_status": int(st)}


@contextmanager
def extra_pg_database(admin_url: str) -> Iterator[str]:
    """A second brand-new PostgreSQL database on the test server, dropped afterwards."""
    name = f"integrity_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def second_backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Generator for a fixture: another empty ledger of the same kind as ``backend_url``."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "second.db")
        return
    with extra_pg_database(str(request.getfixturevalue("pg_server_url"))) as url:
        yield url
