"""followup: the sender's lease moves out of ``webhook_endpoints`` (branch ``followup``)

``webhook_leases``: one row per endpoint a sender has held, with ``lease_until`` (the
sender holds the endpoint until then; empty once released). The lease changed on every
delivery round, so while it lived in ``webhook_endpoints`` that table could not be a
sealed configuration table; without it, the endpoints change only through the
operator's commands, each of which seals the table (``config.sealed``). A lease held
during the upgrade is carried over; ``integrity init`` then seals the endpoints as they
stand.

Revision ID: 0404_webhook_leases
Revises: 0403_case_deadlines
Create Date: 2026-12-05 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import integrity.sqlkit

revision = "0404_webhook_leases"
down_revision = "0403_case_deadlines"
branch_labels = None
depends_on = None

UTC = integrity.sqlkit.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "webhook_leases",
        sa.Column("endpoint_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("lease_until", UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.endpoint_id"],
            name=op.f("fk_webhook_leases_endpoint_id_webhook_endpoints"),
        ),
        sa.PrimaryKeyConstraint("endpoint_id", name=op.f("pk_webhook_leases")),
    )
    op.execute(
        "INSERT INTO webhook_leases (endpoint_id, lease_until) "
        "SELECT endpoint_id, lease_until FROM webhook_endpoints WHERE lease_until IS NOT NULL"
    )
    # A plain DROP COLUMN (SQLite 3.35+ has it): batch mode would copy the table, which
    # the deliveries' foreign key refuses inside the migration's transaction.
    op.drop_column("webhook_endpoints", "lease_until")


def downgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("lease_until", UTC(timezone=True), nullable=True))
    op.execute(
        "UPDATE webhook_endpoints SET lease_until = (SELECT l.lease_until FROM webhook_leases l "
        "WHERE l.endpoint_id = webhook_endpoints.endpoint_id)"
    )
    op.drop_table("webhook_leases")
