"""detect: runs, holds, cleared evidence, window cases (branch ``detect``)

Revision ID: 0300_detect
Revises: 0002
Create Date: 2026-11-28 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import integrity.sqlkit

revision = "0300_detect"
down_revision = "0002"
branch_labels = ("detect",)
depends_on = None

UTC = integrity.sqlkit.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "detect_runs",
        sa.Column(
            "run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("started_at", UTC(timezone=True), nullable=False),
        sa.Column("finished_at", UTC(timezone=True), nullable=True),
        sa.Column("since", UTC(timezone=True), nullable=True),
        sa.Column("until", UTC(timezone=True), nullable=True),
        sa.Column("rule_set_id", sa.String(length=32), nullable=False),
        sa.Column("ratings", sa.Integer(), server_default="0", nullable=False),
        sa.Column("flags", sa.Integer(), server_default="0", nullable=False),
        sa.Column("held", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cases", sa.Integer(), server_default="0", nullable=False),
        sa.Column("complete", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_detect_runs")),
    )
    op.create_table(
        "detect_holds",
        sa.Column("rating_id", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("detector", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rating_id"], ["ratings.rating_id"], name=op.f("fk_detect_holds_rating_id_ratings")
        ),
        sa.PrimaryKeyConstraint("rating_id", "fingerprint", name=op.f("pk_detect_holds")),
    )
    op.create_table(
        "detect_cleared",
        sa.Column("rating_id", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("cleared_by", sa.String(length=64), nullable=False),
        sa.Column("cleared_at", UTC(timezone=True), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rating_id"], ["ratings.rating_id"], name=op.f("fk_detect_cleared_rating_id_ratings")
        ),
        sa.PrimaryKeyConstraint("rating_id", "fingerprint", name=op.f("pk_detect_cleared")),
    )
    op.create_table(
        "detect_cases",
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("window_id", sa.String(length=64), nullable=False),
        sa.Column("opened_at", UTC(timezone=True), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("ratings_held", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_detect_cases")),
    )


def downgrade() -> None:
    op.drop_table("detect_cases")
    op.drop_table("detect_cleared")
    op.drop_table("detect_holds")
    op.drop_table("detect_runs")
