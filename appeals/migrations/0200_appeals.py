"""appeals: appeals, reviewers, votes, evidence (branch ``appeals``)

Revision ID: 0200_appeals
Revises: 0002
Create Date: 2026-11-28 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import integrity.sqlkit

revision = "0200_appeals"
down_revision = "0002"
branch_labels = ("appeals",)
depends_on = None

UTC = integrity.sqlkit.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "appeals",
        sa.Column(
            "appeal_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("rating_id", sa.BigInteger(), nullable=False),
        sa.Column("claims_rating", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("appellant_id", sa.String(length=64), nullable=False),
        sa.Column("appellant_unit", sa.String(length=64), server_default="", nullable=False),
        sa.Column("window_id", sa.String(length=64), nullable=False),
        sa.Column("ground", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("ineligible_reasons", sa.Text(), server_default="", nullable=False),
        sa.Column("round", sa.Integer(), server_default="1", nullable=False),
        sa.Column("filed_at", UTC(timezone=True), nullable=False),
        sa.Column("round_started_at", UTC(timezone=True), nullable=False),
        sa.Column("due_at", UTC(timezone=True), nullable=True),
        sa.Column("decided_at", UTC(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("used_automated_evidence", sa.Boolean(), nullable=True),
        sa.Column("prior_outcome", sa.String(length=16), nullable=True),
        sa.Column("reversals", sa.Integer(), server_default="0", nullable=False),
        sa.Column("escalations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reopens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("closed_at", UTC(timezone=True), nullable=True),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(
            ["rating_id"], ["ratings.rating_id"], name=op.f("fk_appeals_rating_id_ratings")
        ),
        sa.PrimaryKeyConstraint("appeal_id", name=op.f("pk_appeals")),
    )
    op.create_index(op.f("ix_appeals_appellant_id"), "appeals", ["appellant_id"], unique=False)
    op.create_index(op.f("ix_appeals_filed_at"), "appeals", ["filed_at"], unique=False)
    op.create_index("ix_appeals_rating_id", "appeals", ["rating_id"], unique=False)
    op.create_index("ix_appeals_state_due_at", "appeals", ["state", "due_at"], unique=False)
    op.create_index(
        "uq_appeals_rating_claim",
        "appeals",
        ["rating_id"],
        unique=True,
        sqlite_where=sa.text("claims_rating"),
        postgresql_where=sa.text("claims_rating"),
    )
    op.create_table(
        "appeal_reviewers",
        sa.Column("appeal_id", sa.BigInteger(), nullable=False),
        sa.Column("round", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("reviewer_id", sa.String(length=64), nullable=False),
        sa.Column("assigned_by", sa.String(length=64), nullable=False),
        sa.Column("assigned_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appeal_id"],
            ["appeals.appeal_id"],
            name=op.f("fk_appeal_reviewers_appeal_id_appeals"),
        ),
        sa.PrimaryKeyConstraint(
            "appeal_id", "round", "reviewer_id", name=op.f("pk_appeal_reviewers")
        ),
    )
    op.create_table(
        "appeal_votes",
        sa.Column("appeal_id", sa.BigInteger(), nullable=False),
        sa.Column("round", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("reviewer_id", sa.String(length=64), nullable=False),
        sa.Column("vote", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("used_automated_evidence", sa.Boolean(), nullable=False),
        sa.Column("at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appeal_id"], ["appeals.appeal_id"], name=op.f("fk_appeal_votes_appeal_id_appeals")
        ),
        sa.PrimaryKeyConstraint("appeal_id", "round", "reviewer_id", name=op.f("pk_appeal_votes")),
    )
    op.create_table(
        "appeal_evidence",
        sa.Column("appeal_id", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("added_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appeal_id"],
            ["appeals.appeal_id"],
            name=op.f("fk_appeal_evidence_appeal_id_appeals"),
        ),
        sa.PrimaryKeyConstraint("appeal_id", "sha256", name=op.f("pk_appeal_evidence")),
    )


def downgrade() -> None:
    op.drop_table("appeal_evidence")
    op.drop_table("appeal_votes")
    op.drop_table("appeal_reviewers")
    op.drop_index("uq_appeals_rating_claim", table_name="appeals")
    op.drop_index("ix_appeals_state_due_at", table_name="appeals")
    op.drop_index("ix_appeals_rating_id", table_name="appeals")
    op.drop_index(op.f("ix_appeals_filed_at"), table_name="appeals")
    op.drop_index(op.f("ix_appeals_appellant_id"), table_name="appeals")
    op.drop_table("appeals")
