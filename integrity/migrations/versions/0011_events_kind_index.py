"""events: a partial index on (kind, event_id) of the events that are not decisions

The newest event of a kind (``registry.loaded``, ``venues.loaded``, ``period.closed``)
is read when a process opens, by every background round of ``serve`` and by the alerts'
projection; without an index each read scanned the whole ledger, a cost that grew with
it. Decisions (most of the ledger) stay out of the index, so intake pays nothing.

Revision ID: 0011_events_kind_index
Revises: 0010_service_records
Create Date: 2026-12-28 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_events_kind_index"
down_revision = "0010_service_records"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_kind_event_id",
        "events",
        ["kind", "event_id"],
        unique=False,
        sqlite_where=sa.text("kind <> 'decision'"),
        postgresql_where=sa.text("kind <> 'decision'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_events_kind_event_id",
        table_name="events",
        sqlite_where=sa.text("kind <> 'decision'"),
        postgresql_where=sa.text("kind <> 'decision'"),
    )
