"""hashes and pseudonyms compared byte by byte on PostgreSQL (collation "C")

Fingerprints, address and device pseudonyms are hex text. Under the database's own
collation (``en_US.UTF-8``, or ``C.UTF-8`` before PostgreSQL 17) every comparison in
their indexes went through the C library's locale-aware ``strcoll``; hex digits sort
the same either way, so only the cost changes (the indexes are rebuilt). SQLite compares
bytes already: nothing to do there.

Revision ID: 0014_hex_collation
Revises: 0013_no_rating_foreign_keys
Create Date: 2026-12-05 09:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0014_hex_collation"
down_revision = "0013_no_rating_foreign_keys"
branch_labels = None
depends_on = None

#: (table, column, length) of every core column typed ``Hash`` or ``Pseudonym``
COLUMNS = (
    ("ratings", "fingerprint", 64),
    ("ratings", "ip_hash", 32),
    ("ratings", "prefix_hash", 32),
    ("ratings", "device_hash", 32),
    ("venue_addresses", "address_hash", 32),
    ("kiosks", "device_hash", 32),
)


def _collate(name: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    by_table: dict[str, list[str]] = {}
    for table, column, length in COLUMNS:
        by_table.setdefault(table, []).append(
            f'ALTER COLUMN {column} TYPE varchar({length}) COLLATE "{name}"'
        )
    for table, changes in by_table.items():
        op.execute(f"ALTER TABLE {table} {', '.join(changes)}")


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
