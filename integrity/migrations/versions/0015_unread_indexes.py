"""ratings: no index on the address and device pseudonyms; events: decisions out of the
subject index

No query looks a rating up by its ``ip_hash`` or ``device_hash`` (detection reads them
as columns, the limiter keeps its own counters), yet each index of hashed keys cost
every rating written a random page of its B-tree. Decisions, most of the ledger, have
no subject: the subject index now leaves them out, as the kind index does. Three of
the thirteen index entries a rating's three rows added are gone.

Revision ID: 0015_unread_indexes
Revises: 0014_hex_collation
Create Date: 2026-12-05 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_unread_indexes"
down_revision = "0014_hex_collation"
branch_labels = None
depends_on = None

_NOT_NULL = sa.text("subject IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_ratings_ip_hash", table_name="ratings")
    op.drop_index("ix_ratings_device_hash", table_name="ratings")
    op.drop_index("ix_events_subject", table_name="events")
    op.create_index(
        "ix_events_subject",
        "events",
        ["subject"],
        unique=False,
        sqlite_where=_NOT_NULL,
        postgresql_where=_NOT_NULL,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_events_subject", table_name="events", sqlite_where=_NOT_NULL, postgresql_where=_NOT_NULL
    )
    op.create_index("ix_events_subject", "events", ["subject"], unique=False)
    op.create_index("ix_ratings_device_hash", "ratings", ["device_hash"], unique=False)
    op.create_index("ix_ratings_ip_hash", "ratings", ["ip_hash"], unique=False)
