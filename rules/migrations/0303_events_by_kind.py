"""detect: an index on the ledger's events by kind (branch ``detect``)

"The newest event of a kind" (``Ledger.last_event_id(kind)``: has the venue or service
registry been reloaded?) is asked by every batch of the closing projections a detect
run sets off (the low-score alerts read the registry's version per batch of the holds
it projects); without an index each asks it of every event in the ledger, so a run's
close grew with the ledger, not with what it wrote. With ``(kind, event_id)`` it is one
index lookup.

Revision ID: 0303_events_by_kind
Revises: 0302_detect_watermark
Create Date: 2026-12-04 23:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0303_events_by_kind"
down_revision = "0302_detect_watermark"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_kind_event", "events", ["kind", "event_id"])


def downgrade() -> None:
    op.drop_index("ix_events_kind_event", table_name="events")
