"""closed reporting periods

Revision ID: 0008_periods
Revises: 0004
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from integrity.sqlkit import UTCDateTime

revision = "0008_periods"
down_revision = "0006_credentials"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "periods",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("closed_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(128), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.event_id"], name=op.f("fk_periods_event_id_events")
        ),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_periods")),
        sa.UniqueConstraint("event_id", name=op.f("uq_periods_event_id")),
    )


def downgrade() -> None:
    op.drop_table("periods")
