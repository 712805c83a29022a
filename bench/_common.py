"""Shared helpers for the benchmarks: fresh instances on SQLite or PostgreSQL, timing."""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bootstrap import init_instance, open_app
from integrity.app import App, Settings

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"


@contextmanager
def fresh_database(kind: str) -> Iterator[str]:
    """A new empty database URL (``sqlite`` or ``postgresql``), removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{Path(d) / 'bench.db'}"
        return
    name = f"integrity_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def instance(db_url: str, limiter_url: str) -> Iterator[App]:
    """A fresh instance (own home, own Redis namespace) on the given backends."""
    with tempfile.TemporaryDirectory() as home:
        ns = f"bench:{uuid.uuid4().hex[:8]}"
        settings = Settings(
            Path(home), db_url, limiter_url, Path(home) / "secret.key", namespace=ns
        )
        init_instance(settings)
        app = open_app(settings)
        try:
            yield app
        finally:
            app.limiter.reset()
            app.close()


def per_call(fn: Callable[[int], Any], n: int, warmup: int = 50) -> float:
    """Median seconds per call of ``fn(i)`` over ``n`` calls (in 10 batches)."""
    for i in range(warmup):
        fn(-1 - i)
    times = []
    batch = max(1, n // 10)
    i = 0
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn(i)
            i += 1
        times.append((time.perf_counter() - t0) / batch)
    return statistics.median(times)


def rating(i: int, *, served_at: datetime | None = None) -> dict[str, Any]:
    """A valid rating that every gate passes: served ten minutes before now (or at
    ``served_at``), from a device, an address and an address prefix (/24) of its own."""
    served = served_at or datetime.now(UTC) - timedelta(minutes=10)
    return {
        "ticket_id": f"T{i}-{uuid.uuid4().hex[:6]}",
        "window_id": f"W{i % 12:02d}",
        "staff_id": f"S{i % 20:02d}",
        "service_type": "tax",
        "channel": "qr",
        "served_at": served.isoformat(timespec="seconds"),
        "scores": {"attitude": 5, "efficiency": 4, "compliance": 5, "environment": 4, "overall": 5},
        "ip": f"{11 + (i // 62500) % 200}.{(i // 250) % 250}.{i % 250}.7",
        "device_id": f"device-{i}-{uuid.uuid4().hex[:6]}",
    }
