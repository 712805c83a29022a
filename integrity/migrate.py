"""Schema migrations through Alembic, driven from code (``integrity init``, tests).

The core's revisions live in ``integrity/migrations/versions``; each package that owns
tables keeps its own branch in its own folder (``appeals/migrations`` ...), and the
composition root passes those folders in. ``heads`` applies every branch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine, locations: Sequence[Path] = ()) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option(
        "version_locations", " ".join(str(p) for p in (MIGRATIONS / "versions", *locations))
    )
    cfg.set_main_option("path_separator", "space")
    cfg.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return cfg


def upgrade(engine: Engine, locations: Sequence[Path] = (), revision: str = "heads") -> None:
    """Bring the database up to ``revision`` (idempotent), over the core's revisions and
    the packages' branches in ``locations``."""
    cfg = alembic_config(engine, locations)
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str, locations: Sequence[Path] = ()) -> None:
    cfg = alembic_config(engine, locations)
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction for the migrations, their DDL included. On SQLite, the way its
    documentation gives for changing a table's definition: foreign keys are not
    enforced meanwhile (a table copied in batch mode and then dropped is one that other
    tables reference: with enforcement, the drop refuses while they have rows), every
    reference is checked before the commit (``PRAGMA foreign_key_check``: any dangling
    one rolls it all back, when a revision ran), and enforcement is back on the
    connection afterwards, whatever happened."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # outside any transaction, where SQLite takes it into account
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                if sqlite:  # Python's sqlite3 begins only before a row is written: the
                    conn.exec_driver_sql("BEGIN")  # DDL before that would be committed
                before = _heads(conn)
                yield conn
                if sqlite and _heads(conn) != before:  # (the check reads every reference)
                    dangling = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if dangling:
                        raise RuntimeError(f"migration left dangling references: {dangling[:5]}")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def _heads(conn: Connection) -> tuple[str, ...]:
    return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
