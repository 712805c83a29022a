"""risk scores: append-only detector risk, sealed through risk.scored events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_scores",
        sa.Column("event_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("rating_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("risk", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.event_id"], name=op.f("fk_risk_scores_event_id_events")
        ),
        sa.ForeignKeyConstraint(
            ["rating_id"], ["ratings.rating_id"], name=op.f("fk_risk_scores_rating_id_ratings")
        ),
        sa.PrimaryKeyConstraint("event_id", "rating_id", name=op.f("pk_risk_scores")),
    )
    with op.batch_alter_table("risk_scores", schema=None) as batch_op:
        batch_op.create_index(
            "ix_risk_scores_rating_event", ["rating_id", "event_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("risk_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_scores_rating_event")
    op.drop_table("risk_scores")
