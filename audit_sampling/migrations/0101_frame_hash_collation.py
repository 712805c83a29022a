"""audit frames: the frame hash compared byte by byte on PostgreSQL (collation "C"),
as every ``Hash`` column is (see the core's revision 0014_hex_collation)

Revision ID: 0101_frame_hash_collation
Revises: 0100_audit
Create Date: 2026-12-05 09:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0101_frame_hash_collation"
down_revision = "0100_audit"
branch_labels = None
depends_on = None


def _collate(name: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f'ALTER TABLE audit_frames ALTER COLUMN frame_hash TYPE varchar(64) COLLATE "{name}"'
        )


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
