"""Shared fixtures: real servers, isolated per test session.

A missing PostgreSQL or Redis is a skip on a laptop and a failure under ``CI=true``.
Each session gets its own PostgreSQL database and its own Redis key namespace, so
several test runs (and several developers) can share one server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_ADMIN_URL = os.environ.get(
    "INTEGRITY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("INTEGRITY_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session", autouse=True)
def no_personal_credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never sign in with the developer's own token or server: no INTEGRITY_TOKEN,
    INTEGRITY_TOKEN_FILE or INTEGRITY_SERVER, and an empty config folder (so no
    ``~/.config/integrity/token``). A test that signs in says so itself."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("INTEGRITY_TOKEN", "INTEGRITY_TOKEN_FILE", "INTEGRITY_SERVER"):
            mp.delenv(var, raising=False)
        mp.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
        yield


def _missing(what: str, err: Exception) -> None:
    msg = f"{what} is not reachable: {err}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: a missing server is a failure)", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis server; skipped (or failed under CI) when none answers."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as err:
        _missing("Redis", err)
    return REDIS_URL


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A fresh key prefix for one test; its keys are deleted afterwards."""
    import redis

    ns = f"itest:{uuid.uuid4().hex[:12]}"
    yield ns
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{ns}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """Admin URL of a real PostgreSQL server; skipped (or failed under CI) when none answers."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as err:
        _missing("PostgreSQL", err)
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """URL of a brand-new, empty PostgreSQL database, dropped after the test."""
    import sqlalchemy as sa

    name = f"integrity_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = sa.engine.make_url(pg_server_url)
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
