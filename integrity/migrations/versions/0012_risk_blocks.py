"""risk blocks: a scoring run's changed risks as one row of columns, not a row per rating

A detection run over a million ratings changed the risk of about 600,000 of them and
wrote as many ``risk_scores`` rows (two B-trees each); the run now writes one
``risk_blocks`` row (rating ids and risks, compressed) under its ``risk.scored`` event.
Rows already in ``risk_scores`` stay (verify reads both).

Revision ID: 0012_risk_blocks
Revises: 0011_events_kind_index
Create Date: 2026-12-05 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_risk_blocks"
down_revision = "0011_events_kind_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_blocks",
        sa.Column("event_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ratings", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.event_id"], name=op.f("fk_risk_blocks_event_id_events")
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_risk_blocks")),
    )


def downgrade() -> None:
    op.drop_table("risk_blocks")
