"""audit sampling: frames, samples, strata, batches, items, findings (branch ``audit``)

Revision ID: 0100_audit
Revises: 0002
Create Date: 2026-11-28 18:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import integrity.sqlkit

revision = "0100_audit"
down_revision = "0002"
branch_labels = ("audit",)
depends_on = None

UTC = integrity.sqlkit.UTCDateTime
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_frames",
        sa.Column("frame_id", Id, autoincrement=True, nullable=False),
        sa.Column("frame_hash", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("period_start", UTC(timezone=True), nullable=False),
        sa.Column("period_end", UTC(timezone=True), nullable=False),
        sa.Column("checkpoint", sa.String(length=160), nullable=False),
        sa.Column("log_size", sa.BigInteger(), nullable=False),
        sa.Column("ratings", sa.BigInteger(), nullable=False),
        sa.Column("strata", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("frame_id", name=op.f("pk_audit_frames")),
        sa.UniqueConstraint("frame_hash", name=op.f("uq_audit_frames_frame_hash")),
    )
    op.create_index(op.f("ix_audit_frames_period"), "audit_frames", ["period"], unique=False)
    op.create_table(
        "audit_samples",
        sa.Column("sample_id", Id, autoincrement=True, nullable=False),
        sa.Column("frame_id", sa.BigInteger(), nullable=False),
        sa.Column("seed", sa.String(length=256), nullable=False),
        sa.Column("seed_note", sa.Text(), server_default="", nullable=False),
        sa.Column("algorithm", sa.String(length=64), nullable=False),
        sa.Column("rate", sa.String(length=32), nullable=False),
        sa.Column("min_per_stratum", sa.Integer(), nullable=False),
        sa.Column("risk_extra", sa.Integer(), server_default="0", nullable=False),
        sa.Column("risk_min", sa.Float(), server_default="0", nullable=False),
        sa.Column("risk_take", sa.Integer(), server_default="0", nullable=False),
        sa.Column("risk_history", sa.Text(), server_default="[]", nullable=False),
        sa.Column("drawn_at", UTC(timezone=True), nullable=False),
        sa.Column("drawn_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["audit_frames.frame_id"],
            name=op.f("fk_audit_samples_frame_id_audit_frames"),
        ),
        sa.PrimaryKeyConstraint("sample_id", name=op.f("pk_audit_samples")),
        sa.UniqueConstraint("frame_id", name=op.f("uq_audit_samples_frame_id")),
        sa.UniqueConstraint("seed", name=op.f("uq_audit_samples_seed")),
    )
    op.create_table(
        "audit_strata",
        sa.Column("sample_id", sa.BigInteger(), nullable=False),
        sa.Column("window_id", sa.String(length=64), nullable=False),
        sa.Column("population", sa.BigInteger(), nullable=False),
        sa.Column("base_take", sa.Integer(), nullable=False),
        sa.Column("take", sa.Integer(), nullable=False),
        sa.Column("history", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["audit_samples.sample_id"],
            name=op.f("fk_audit_strata_sample_id_audit_samples"),
        ),
        sa.PrimaryKeyConstraint("sample_id", "window_id", name=op.f("pk_audit_strata")),
    )
    op.create_table(
        "audit_batches",
        sa.Column("batch_id", Id, autoincrement=True, nullable=False),
        sa.Column("sample_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("auditor_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("assigned_at", UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["auditor_id"], ["people.person_id"], name=op.f("fk_audit_batches_auditor_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["audit_samples.sample_id"],
            name=op.f("fk_audit_batches_sample_id_audit_samples"),
        ),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_audit_batches")),
        sa.UniqueConstraint("sample_id", "seq", name=op.f("uq_audit_batches_sample_id_seq")),
    )
    op.create_index(
        op.f("ix_audit_batches_auditor_id"), "audit_batches", ["auditor_id"], unique=False
    )
    op.create_table(
        "audit_items",
        sa.Column("sample_id", sa.BigInteger(), nullable=False),
        sa.Column("rating_id", sa.BigInteger(), nullable=False),
        sa.Column("window_id", sa.String(length=64), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("risk_rank", sa.Integer(), nullable=True),
        sa.Column("ticket", sa.String(length=96), nullable=False),
        sa.Column("risk", sa.Float(), server_default="0", nullable=False),
        sa.Column("added", sa.String(length=16), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["audit_batches.batch_id"],
            name=op.f("fk_audit_items_batch_id_audit_batches"),
        ),
        sa.ForeignKeyConstraint(
            ["rating_id"], ["ratings.rating_id"], name=op.f("fk_audit_items_rating_id_ratings")
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["audit_samples.sample_id"],
            name=op.f("fk_audit_items_sample_id_audit_samples"),
        ),
        sa.PrimaryKeyConstraint("sample_id", "rating_id", name=op.f("pk_audit_items")),
    )
    op.create_index(op.f("ix_audit_items_batch_id"), "audit_items", ["batch_id"], unique=False)
    op.create_table(
        "audit_findings",
        sa.Column("sample_id", sa.BigInteger(), nullable=False),
        sa.Column("rating_id", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("auditor_id", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", UTC(timezone=True), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("void_event_id", sa.BigInteger(), nullable=True),
        sa.Column("replacement_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["audit_batches.batch_id"],
            name=op.f("fk_audit_findings_batch_id_audit_batches"),
        ),
        sa.ForeignKeyConstraint(
            ["rating_id"], ["ratings.rating_id"], name=op.f("fk_audit_findings_rating_id_ratings")
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["audit_samples.sample_id"],
            name=op.f("fk_audit_findings_sample_id_audit_samples"),
        ),
        sa.PrimaryKeyConstraint("sample_id", "rating_id", name=op.f("pk_audit_findings")),
    )
    op.create_index(
        op.f("ix_audit_findings_batch_id"), "audit_findings", ["batch_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_findings_batch_id"), table_name="audit_findings")
    op.drop_table("audit_findings")
    op.drop_index(op.f("ix_audit_items_batch_id"), table_name="audit_items")
    op.drop_table("audit_items")
    op.drop_index(op.f("ix_audit_batches_auditor_id"), table_name="audit_batches")
    op.drop_table("audit_batches")
    op.drop_table("audit_strata")
    op.drop_table("audit_samples")
    op.drop_index(op.f("ix_audit_frames_period"), table_name="audit_frames")
    op.drop_table("audit_frames")
