"""review: escalations of overdue held ratings and window cases (branch ``detect``)

Revision ID: 0301_review
Revises: 0300_detect
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import integrity.sqlkit

revision = "0301_review"
down_revision = "0300_detect"
branch_labels = None
depends_on = None

UTC = integrity.sqlkit.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "review_escalations",
        sa.Column("item", sa.String(length=128), nullable=False),
        sa.Column("due_at", UTC(timezone=True), nullable=False),
        sa.Column("window_id", sa.String(length=64), nullable=False),
        sa.Column("ratings", sa.Integer(), nullable=False),
        sa.Column("escalated_at", UTC(timezone=True), nullable=False),
        sa.Column("escalated_by", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("item", "due_at", name=op.f("pk_review_escalations")),
    )


def downgrade() -> None:
    op.drop_table("review_escalations")
