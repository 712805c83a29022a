"""Shared test helpers: rating dicts, wired Apps over a given ledger and limiter, row counts.

Every App built here runs on a :class:`~integrity.clock.FrozenClock` (nothing sleeps) and
keeps its instance home (secret key, embedded files) under a test's ``tmp_path``.

Initialising an instance runs every Alembic migration, which costs more than most tests.
So the first instance of a test process is initialised for real (``init_instance``) and
kept as a template: later SQLite ledgers are copies of its file; PostgreSQL ledgers come
from a :class:`PgPool` of copies, reset between tests. ``tests/integration/test_migrations.py``
runs the migrations on empty databases itself.
"""

from __future__ import annotations

import atexit
import itertools
import random
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import strategies as st

from bootstrap import init_instance, open_app
from integrity.adapters import tables as t
from integrity.app import App, Settings
from integrity.clock import FrozenClock
from integrity.model import CHANNELS, DEFAULT_RUBRIC, VERBAL_LEVELS

# 2026-10-15 10:00 in Shanghai, the default rule set's time zone.
T0 = datetime(2026, 10, 15, 2, 0, tzinfo=UTC)

SCORES = {"attitude": 5, "efficiency": 4, "compliance": 5, "environment": 4, "overall": 5}

_serial = itertools.count(1)


def serial() -> int:
    """A number unique within the test session."""
    return next(_serial)


def rating(*, omit: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    """A valid intake object (docs/reference.md, Ratings) with a fresh ticket, address and device.

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


# -- templates -----------------------------------------------------------------------------

_templates: dict[str, Any] = {}


def _sqlite_template() -> Path:
    """A folder with an initialised embedded ledger (default rule set, activated at T0)."""
    if "sqlite" not in _templates:
        folder = Path(tempfile.mkdtemp(prefix="integrity-template-"))
        atexit.register(shutil.rmtree, folder, True)
        init_instance(make_settings(folder), clock=FrozenClock(T0))
        for suffix in ("-wal", "-shm"):  # closed cleanly: everything is in the main file
            assert not (folder / f"ledger.db{suffix}").exists()
        _templates["sqlite"] = folder
    return Path(_templates["sqlite"])


def _admin(admin_url: str) -> sa.Engine:
    return sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


class PgPool:
    """Initialised PostgreSQL ledger databases, reset between tests rather than re-created.

    Every DROP DATABASE makes PostgreSQL write a checkpoint, and every CREATE DATABASE
    dirties the whole copy: on a busy server each costs seconds. So a database handed back
    is emptied (DELETE, then the template's few rows put back) and handed out again. One
    that a test left altered (its own triggers or functions, other tables) is dropped
    instead. Commits do not wait for the WAL flush (``synchronous_commit=off``): durability
    after a server crash is not what these tests are about.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = f"integrity_tmpl_{uuid.uuid4().hex[:12]}"
        self.free: list[str] = []
        self.created: list[str] = []
        atexit.register(self.close)
        self._create(self.template, None)
        home = Path(tempfile.mkdtemp(prefix="integrity-template-"))
        atexit.register(shutil.rmtree, home, True)
        init_instance(make_settings(home, self.url(self.template)), clock=FrozenClock(T0))
        engine = sa.create_engine(self.url(self.template), poolclass=sa.pool.NullPool)
        try:
            self.tables = sa.MetaData()
            self.tables.reflect(engine)
            with engine.connect() as conn:
                self.rows = {
                    tbl.name: [dict(r) for r in conn.execute(sa.select(tbl)).mappings()]
                    for tbl in self.tables.sorted_tables
                }
                self.serials = conn.execute(
                    sa.text(
                        "SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = 'public' AND column_default LIKE 'nextval%'"
                    )
                ).all()
        finally:
            engine.dispose()

    def url(self, name: str) -> str:
        return (
            sa.engine.make_url(self.admin_url)
            .set(database=name)
            .render_as_string(hide_password=False)
        )

    def _create(self, name: str, template: str | None) -> None:
        engine = _admin(self.admin_url)
        try:
            with engine.connect() as conn:
                copy = f' TEMPLATE "{template}"' if template else ""
                conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
                conn.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit TO off'))
        finally:
            engine.dispose()
        self.created.append(name)

    def take(self) -> str:
        """The URL of an initialised ledger that nobody else uses."""
        if self.free:
            return self.url(self.free.pop())
        name = f"integrity_test_{uuid.uuid4().hex[:12]}"
        self._create(name, self.template)
        return self.url(name)

    def give_back(self, url: str) -> None:
        name = str(sa.engine.make_url(url).database)
        if self._reset(name):
            self.free.append(name)
        else:
            self._drop([name])

    def _reset(self, name: str) -> bool:
        admin = _admin(self.admin_url)
        try:
            with admin.connect() as conn:  # whatever a test left connected
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
        finally:
            admin.dispose()
        engine = sa.create_engine(self.url(name), poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                if set(sa.inspect(conn).get_table_names()) != set(self.tables.tables):
                    return False
                extra = conn.execute(
                    sa.text(
                        "SELECT (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal) + "
                        "(SELECT count(*) FROM pg_proc p JOIN pg_namespace n "
                        "ON n.oid = p.pronamespace WHERE n.nspname = 'public')"
                    )
                ).scalar_one()
                if extra:
                    return False
                # DELETE, not TRUNCATE: a few hundred rows are cheaper to delete than
                # seventy-odd files are to replace
                for tbl in reversed(self.tables.sorted_tables):
                    if tbl.name != "alembic_version":
                        conn.execute(tbl.delete())
                for tbl in self.tables.sorted_tables:
                    if tbl.name != "alembic_version" and self.rows[tbl.name]:
                        conn.execute(tbl.insert(), self.rows[tbl.name])
                for table, column in self.serials:
                    conn.execute(
                        sa.text(
                            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'), "
                            f'COALESCE((SELECT max("{column}") FROM "{table}"), 0) + 1, false)'
                        )
                    )
            return True
        except sa.exc.SQLAlchemyError:
            return False
        finally:
            engine.dispose()

    def _drop(self, names: list[str]) -> None:
        engine = _admin(self.admin_url)
        try:
            with engine.connect() as conn:
                for name in names:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()

    def close(self) -> None:
        self._drop(self.created[::-1])


def pg_pool(admin_url: str) -> PgPool:
    key = f"pg:{admin_url}"
    if key not in _templates:
        _templates[key] = PgPool(admin_url)
    pool: PgPool = _templates[key]
    return pool


@contextmanager
def pg_ledger(admin_url: str) -> Iterator[str]:
    """A fresh, initialised PostgreSQL ledger database for the duration of the block."""
    pool = pg_pool(admin_url)
    url = pool.take()
    try:
        yield url
    finally:
        pool.give_back(url)


# -- apps ------------------------------------------------------------------------------------


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
    deployment; ``db_url`` defaults to the embedded SQLite file in ``home``. A SQLite
    ledger that does not exist yet starts as a copy of the initialised template.
    """
    clock = clock or FrozenClock(T0)
    settings = make_settings(home, db_url, limiter_url, namespace)
    if init and rules_text is None and settings.db_url.startswith("sqlite:///"):
        target = Path(settings.db_url.removeprefix("sqlite:///"))
        if not target.exists():
            template = _sqlite_template()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template / "ledger.db", target)
    if init:
        init_instance(settings, rules_text=rules_text, clock=clock)
    return open_app(settings, clock=clock)


def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An initialised ledger for a ``sqlite`` / ``postgresql`` fixture parameter."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "ledger.db")
    if request.param == "postgresql":
        ctx = pg_ledger(str(request.getfixturevalue("pg_server_url")))
        url = ctx.__enter__()
        request.addfinalizer(lambda: ctx.__exit__(None, None, None))
        return url
    raise ValueError(f"unknown backend {request.param!r}")


def app_on_each_backend() -> Any:
    """A module's ``app`` fixture: an initialised App on SQLite, then on PostgreSQL
    (``app = app_on_each_backend()`` in the test module)."""

    @pytest.fixture(params=["sqlite", "postgresql"])
    def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
        a = make_app(tmp_path / "home", backend_url(request, tmp_path))
        try:
            yield a
        finally:
            a.close()

    return app


def second_backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Generator for a fixture: another initialised ledger of the same kind."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "second.db")
        return
    with pg_ledger(str(request.getfixturevalue("pg_server_url"))) as url:
        yield url


def intake_key(app: App, name: str | None = None, **scope: Any) -> str:
    """Register an intake client on ``app`` (``integrity clients add``) and return its key,
    for ``Authorization: Bearer``. ``scope``: ``halls=[...]``, ``windows=[...]``,
    ``expires="30"``."""
    from integrity.clients import IntakeClients

    _, key = app.get(IntakeClients).add(name or f"gw-{serial()}", **scope)
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- counting ---------------------------------------------------------------------------------

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


# -- hypothesis -------------------------------------------------------------------------------

_score = st.integers(1, 5) | st.sampled_from(sorted(VERBAL_LEVELS))
_chars = st.characters(codec="utf-8", exclude_characters="\x00")  # NUL: refused (PostgreSQL)
_text = st.text(_chars, min_size=1, max_size=64)
_instant = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
_offset = st.integers(-12 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))


def rfc3339(at: datetime, off: timedelta) -> str:
    return at.astimezone(timezone(off)).isoformat()


@st.composite
def valid_ratings(draw: st.DrawFn) -> dict[str, Any]:
    """Any intake object the rating format allows, optional fields present or not."""
    doc: dict[str, Any] = {
        "ticket_id": draw(st.text(_chars, min_size=1, max_size=128)),
        "window_id": draw(_text),
        "scores": {d: draw(_score) for d in DEFAULT_RUBRIC.dimensions},
        "ip": draw(st.ip_addresses().map(str) | st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}")),
        "device_id": draw(st.text(_chars, min_size=1, max_size=128)),
    }
    if draw(st.booleans()):
        doc["staff_id"] = draw(_text)
    if draw(st.booleans()):
        doc["service_type"] = draw(_text)
    if draw(st.booleans()):
        doc["channel"] = draw(st.sampled_from(CHANNELS))
    if draw(st.booleans()):
        doc["served_at"] = rfc3339(draw(_instant), draw(_offset))
    if draw(st.booleans()):
        doc["submitted_at"] = rfc3339(draw(_instant), draw(_offset))
    if draw(st.booleans()):
        doc["comment"] = draw(st.text(_chars, max_size=2000))
    return doc


def history(start: datetime, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` ratings in time order from ``start`` (a minute apart on average) by a few
    devices on a few address blocks, so rate limits decide many of them; with some
    identical retries and some second ratings of a ticket, as real feeds have."""
    rng = random.Random(seed)
    tag = serial()
    docs: list[dict[str, Any]] = []
    at = start
    for i in range(n):
        at += timedelta(seconds=rng.randint(1, 119))
        d = rng.randrange(25)
        doc = rating(
            ticket_id=f"H{tag}-{i:06d}",
            device_id=f"hd{tag}-{d}",
            ip=f"10.{200 + d % 6}.{tag % 250}.{d + 1}",
            window_id=f"W{rng.randrange(6)}",
            submitted_at=at.isoformat(),
            served_at=(at - timedelta(minutes=rng.randint(1, 30))).isoformat(),
        )
        roll = rng.random()
        if docs and roll < 0.03:
            doc = dict(docs[rng.randrange(len(docs))])  # an identical retry
        elif docs and roll < 0.06:
            doc["ticket_id"] = docs[-1]["ticket_id"]  # a second rating of a ticket
        docs.append(doc)
    return docs
