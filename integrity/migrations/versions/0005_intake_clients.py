"""intake clients: keyed services that may submit ratings; ratings record their client

Revision ID: 0005_intake_clients
Revises: 0004
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from integrity.sqlkit import UTCDateTime

revision = "0005_intake_clients"
down_revision = "0008_periods"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intake_clients",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("halls", sa.Text(), server_default="", nullable=False),
        sa.Column("windows", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("rotated_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_intake_clients")),
        sa.UniqueConstraint("key_id", name=op.f("uq_intake_clients_key_id")),
    )
    op.add_column("ratings", sa.Column("client_id", sa.String(64), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+ has it): batch mode would copy `ratings`, which the
    # ledger's foreign keys refuse inside the migration's transaction.
    op.drop_column("ratings", "client_id")
    op.drop_table("intake_clients")
