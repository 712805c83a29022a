"""events and rating_status: no foreign keys to ratings

PostgreSQL checked both for every row of a batch, a lookup and a row lock in
``ratings`` per event and per status row: a third of the server's work in a batch
ingest (30,000 ratings: 0.33 of 0.95 s of its processor time in the three COPYs). The one
writer (``SqlLedger``) writes a rating with its decision event and status row in one
transaction, and ``integrity ledger verify`` names every event or status row whose
rating is not stored (the Merkle leaf of a decision covers its rating's fields too, so a
deleted rating was already named there).

On SQLite the two tables are copied into new ones without the constraint (batch mode).

Revision ID: 0013_no_rating_foreign_keys
Revises: 0012_risk_blocks
Create Date: 2026-12-05 09:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0013_no_rating_foreign_keys"
down_revision = "0012_risk_blocks"
branch_labels = None
depends_on = None

_KEYS = (
    ("events", "fk_events_rating_id_ratings"),
    ("rating_status", "fk_rating_status_rating_id_ratings"),
)


def upgrade() -> None:
    for table, name in _KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table, name in _KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(name, "ratings", ["rating_id"], ["rating_id"])
