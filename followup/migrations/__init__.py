"""Alembic migrations of this package's own tables (a branch on the core's ``0002``)."""
