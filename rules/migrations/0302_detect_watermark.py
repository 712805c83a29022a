"""detect: each run's watermark in the ledger's events (branch ``detect``)

``events_from``: the newest event id before the run read the ledger; ``events_to``: the
newest after its own writes. A run over the whole ledger whose inputs did not change
since the last one (no event that detection reads in between) has nothing to do.
``snapshot_sha256``: the SHA-256 of the columnar snapshot of what a whole-ledger run
read (kept in the instance's home), so that the next run reads only what is new and
uses the file only if it is the one this run wrote.

Revision ID: 0302_detect_watermark
Revises: 0301_review
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0302_detect_watermark"
down_revision = "0301_review"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("detect_runs", sa.Column("events_from", sa.BigInteger(), nullable=True))
    op.add_column("detect_runs", sa.Column("events_to", sa.BigInteger(), nullable=True))
    op.add_column("detect_runs", sa.Column("snapshot_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("detect_runs") as batch:
        batch.drop_column("snapshot_sha256")
        batch.drop_column("events_to")
        batch.drop_column("events_from")
