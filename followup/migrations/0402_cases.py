"""followup: rectification cases opened by a month's close (branch ``followup``)

Revision ID: 0402_cases
Revises: 0401_alerts
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import integrity.sqlkit

revision = "0402_cases"
down_revision = "0401_alerts"
branch_labels = None
depends_on = None

UTC = integrity.sqlkit.UTCDateTime
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rectification_cases",
        sa.Column("case_id", ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("hall_id", sa.String(length=64), nullable=True),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("counted", sa.Integer(), nullable=False),
        sa.Column("low_scores", sa.Integer(), nullable=False),
        sa.Column("low_score_rate", sa.Float(), nullable=True),
        sa.Column("low_rate_lo", sa.Float(), nullable=True),
        sa.Column("low_rate_hi", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("mark", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", UTC(timezone=True), nullable=False),
        sa.Column("due_at", UTC(timezone=True), nullable=False),
        sa.Column("opened_event_id", sa.BigInteger(), nullable=False),
        sa.Column("carried_from", sa.BigInteger(), nullable=True),
        sa.Column("plan", sa.Text(), nullable=True),
        sa.Column("planned_at", UTC(timezone=True), nullable=True),
        sa.Column("planned_by", sa.String(length=64), nullable=True),
        sa.Column("notes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_note_at", UTC(timezone=True), nullable=True),
        sa.Column("checked_period", sa.String(length=7), nullable=True),
        sa.Column("checked_counted", sa.Integer(), nullable=True),
        sa.Column("checked_rate", sa.Float(), nullable=True),
        sa.Column("checked_at", UTC(timezone=True), nullable=True),
        sa.Column("closed_at", UTC(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_rectification_cases")),
        sa.UniqueConstraint("kind", "subject", "period", name="uq_rectification_cases_subject"),
    )
    op.create_index("ix_rectification_cases_state", "rectification_cases", ["state"])
    op.create_index("ix_rectification_cases_period", "rectification_cases", ["period"])


def downgrade() -> None:
    op.drop_index("ix_rectification_cases_period", table_name="rectification_cases")
    op.drop_index("ix_rectification_cases_state", table_name="rectification_cases")
    op.drop_table("rectification_cases")
