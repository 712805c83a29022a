"""followup: low-score alerts, the projection's cursor and gaps (branch ``followup``)

Revision ID: 0401_alerts
Revises: 0400_followup
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import integrity.sqlkit

revision = "0401_alerts"
down_revision = "0400_followup"
branch_labels = None
depends_on = None

UTC = integrity.sqlkit.UTCDateTime
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", ID, autoincrement=True, nullable=False),
        sa.Column("rating_id", sa.BigInteger(), nullable=False),
        sa.Column("claims_rating", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("window_id", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.String(length=64), nullable=True),
        sa.Column("service_type", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", UTC(timezone=True), nullable=False),
        sa.Column("respond_by", UTC(timezone=True), nullable=False),
        sa.Column("reply_by", UTC(timezone=True), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("cause_event_id", sa.BigInteger(), nullable=False),
        sa.Column("responded_at", UTC(timezone=True), nullable=True),
        sa.Column("responded_by", sa.String(length=64), nullable=True),
        sa.Column("verified_at", UTC(timezone=True), nullable=True),
        sa.Column("callback", sa.String(length=16), nullable=True),
        sa.Column("finding", sa.String(length=32), nullable=True),
        sa.Column("appeal_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("rectified_at", UTC(timezone=True), nullable=True),
        sa.Column("action", sa.Text(), nullable=True),
        sa.Column("replied_at", UTC(timezone=True), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("closed_at", UTC(timezone=True), nullable=True),
        sa.Column("voided_at", UTC(timezone=True), nullable=True),
        sa.Column("void_event_id", sa.BigInteger(), nullable=True),
        sa.Column("respond_overdue_at", UTC(timezone=True), nullable=True),
        sa.Column("reply_overdue_at", UTC(timezone=True), nullable=True),
        sa.Column("escalated_at", UTC(timezone=True), nullable=True),
        sa.Column("escalated_to", sa.String(length=64), nullable=True),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(
            ["rating_id"], ["ratings.rating_id"], name=op.f("fk_alerts_rating_id_ratings")
        ),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alerts")),
    )
    op.create_index(
        "uq_alerts_rating_claim",
        "alerts",
        ["rating_id"],
        unique=True,
        sqlite_where=sa.text("claims_rating"),
        postgresql_where=sa.text("claims_rating"),
    )
    op.create_index("ix_alerts_rating_id", "alerts", ["rating_id"], unique=False)
    op.create_index("ix_alerts_window_state", "alerts", ["window_id", "state"], unique=False)
    op.create_index("ix_alerts_state_reply_by", "alerts", ["state", "reply_by"], unique=False)
    op.create_index("ix_alerts_opened_at", "alerts", ["opened_at"], unique=False)
    op.create_index("ix_alerts_staff_id", "alerts", ["staff_id"], unique=False)
    op.create_table(
        "alert_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_cursor")),
    )
    # Alerts start at the ledger's end: ratings judged before alerts existed raise none
    # (an upgraded instance is not flooded with long-overdue alerts about old ratings).
    op.execute(
        "INSERT INTO alert_cursor (id, last_event_id) "
        "SELECT 1, COALESCE(MAX(event_id), 0) FROM events"
    )
    op.create_table(
        "alert_gaps",
        sa.Column("lo", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hi", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lo", name=op.f("pk_alert_gaps")),
    )


def downgrade() -> None:
    op.drop_table("alert_gaps")
    op.drop_table("alert_cursor")
    op.drop_index("ix_alerts_staff_id", table_name="alerts")
    op.drop_index("ix_alerts_opened_at", table_name="alerts")
    op.drop_index("ix_alerts_state_reply_by", table_name="alerts")
    op.drop_index("ix_alerts_window_state", table_name="alerts")
    op.drop_index("ix_alerts_rating_id", table_name="alerts")
    op.drop_index("uq_alerts_rating_claim", table_name="alerts")
    op.drop_table("alerts")
