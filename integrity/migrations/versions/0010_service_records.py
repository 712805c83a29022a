"""service records: the queue system's tickets (window, staff, time of service)

Revision ID: 0010_service_records
Revises: 0009_report_columns
Create Date: 2026-12-20 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from integrity.sqlkit import UTCDateTime

revision = "0010_service_records"
down_revision = "0009_report_columns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_records",
        sa.Column("ticket_id", sa.String(128), nullable=False),
        sa.Column("window_id", sa.String(64), nullable=False),
        sa.Column("staff_id", sa.String(64), nullable=True),
        sa.Column("served_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_service_records")),
    )


def downgrade() -> None:
    op.drop_table("service_records")
