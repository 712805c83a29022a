"""Alembic environment: migrations run on the connection the engine hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

# Revisions create tables with explicit operations; the shared metadata only serves
# autogenerate and `alembic check`: the core's tables are on it, and each package adds
# its own when the composition root imports it.
import integrity.adapters.tables  # noqa: F401
from integrity.sqlkit import metadata

config = context.config
target_metadata = metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
