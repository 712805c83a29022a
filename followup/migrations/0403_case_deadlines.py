"""followup: a rectification case's due date marked and escalated (branch ``followup``)

``overdue_at``: when an active case past its due date was marked overdue
(``rectification.overdue``); ``escalated_at``, ``escalated_to``: when it was escalated
and to whom (``rectification.escalated``: the hall's supervisor; empty with
``escalated_at`` set: the admins). Each is written once per case.

Revision ID: 0403_case_deadlines
Revises: 0402_cases
Create Date: 2026-12-05 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import integrity.sqlkit

revision = "0403_case_deadlines"
down_revision = "0402_cases"
branch_labels = None
depends_on = None

UTC = integrity.sqlkit.UTCDateTime


def upgrade() -> None:
    op.add_column("rectification_cases", sa.Column("overdue_at", UTC(timezone=True), nullable=True))
    op.add_column(
        "rectification_cases", sa.Column("escalated_at", UTC(timezone=True), nullable=True)
    )
    op.add_column(
        "rectification_cases", sa.Column("escalated_to", sa.String(length=64), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("rectification_cases") as batch:
        batch.drop_column("escalated_to")
        batch.drop_column("escalated_at")
        batch.drop_column("overdue_at")
