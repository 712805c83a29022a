"""Schema migrations through Alembic, driven from code (``integrity init``, tests).

The core's revisions live in ``integrity/migrations/versions``; each package that owns
tables keeps its own branch in its own folder (``appeals/migrations`` ...), and the
composition root passes those folders in. ``heads`` applies every branch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

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
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str, locations: Sequence[Path] = ()) -> None:
    cfg = alembic_config(engine, locations)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
