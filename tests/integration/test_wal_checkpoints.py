"""``Ledger.checkpointing_beside``: SQLite's WAL copied into the database by a thread of
its own while a run of large writes goes on (detection's holds and risks), not by each
commit; what is written is the same."""

from __future__ import annotations

import os

import pytest

from integrity.adapters.sql import WAL_AUTOCHECKPOINT
from integrity.app import App
from tests.factories import app_on_each_backend, rating, rating_counts

app = app_on_each_backend()


def _autocheckpoint(app: App) -> int:
    with app.ledger.engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def _db_file(app: App) -> str:
    path = app.ledger.engine.url.database
    assert path
    return path


def test_writes_inside_are_the_same_writes(app: App) -> None:
    before = rating_counts(app.ledger.engine)
    with app.ledger.checkpointing_beside():
        ids = [app.validate(rating()).rating_id for _ in range(20)]
        with app.ledger.checkpointing_beside():  # inside already: nothing more
            ids.append(app.validate(rating()).rating_id)
        assert app.ledger.set_risk({ids[0]: 0.7}, at=app.clock.now()) == 1
    after = rating_counts(app.ledger.engine)
    assert after["ratings"] == before["ratings"] + 21
    assert after["rating_status"] == before["rating_status"] + 21
    assert app.ledger.rating(ids[0]).risk == pytest.approx(0.7)
    app.log.seal(app.clock.now())
    assert app.log.verify(app.clock.now()).problems == []


def test_sqlite_commits_leave_the_wal_to_the_thread(app: App) -> None:
    if app.ledger.dialect != "sqlite":
        pytest.skip("SQLite's write-ahead log only")
    with app.ledger.engine.connect() as conn:  # start from an empty WAL
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(_db_file(app))
    assert _autocheckpoint(app) == WAL_AUTOCHECKPOINT
    with app.ledger.checkpointing_beside():
        # the writers' own automatic checkpoint is off meanwhile
        assert _autocheckpoint(app) == 0
        for _ in range(60):
            app.validate(rating())
    # the last checkpoint is made before it returns: the pages are in the database
    # file, though far fewer than the automatic checkpoint's threshold were written
    assert os.path.getsize(_db_file(app)) > size
    assert _autocheckpoint(app) == WAL_AUTOCHECKPOINT

    # without it, the same writes stay in the WAL (below the automatic threshold)
    size = os.path.getsize(_db_file(app))
    for _ in range(60):
        app.validate(rating())
    assert os.path.getsize(_db_file(app)) == size
