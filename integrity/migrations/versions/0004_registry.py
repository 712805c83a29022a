"""service registry: halls, windows, roster

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "halls",
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), server_default="", nullable=False),
        sa.Column("supervisor", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("hall_id", name=op.f("pk_halls")),
    )
    op.create_table(
        "windows",
        sa.Column("window_id", sa.String(64), nullable=False),
        sa.Column("hall_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), server_default="", nullable=False),
        sa.Column("head", sa.String(64), nullable=True),
        sa.Column("service_types", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["hall_id"], ["halls.hall_id"], name=op.f("fk_windows_hall_id_halls")
        ),
        sa.PrimaryKeyConstraint("window_id", name=op.f("pk_windows")),
    )
    op.create_table(
        "roster",
        sa.Column(
            "entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("window_id", sa.String(64), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["window_id"], ["windows.window_id"], name=op.f("fk_roster_window_id_windows")
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_roster")),
    )
    with op.batch_alter_table("roster", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_roster_staff_id"), ["staff_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("roster", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_roster_staff_id"))
    op.drop_table("roster")
    op.drop_table("windows")
    op.drop_table("halls")
