"""credentials: personal tokens (several per person, expiring, revocable) and OS users

Revision ID: 0006_credentials
Revises: 0004
Create Date: 2026-12-10 10:00:00

The single never-expiring token per person (``people.token_hash``) moves into
``credentials``: each one carried over expires 90 days after this upgrade and can be
revoked like any other. ``os_users`` maps accounts of a shared host to people.

``people.token_hash`` stays, retired and emptied: SQLite can drop a UNIQUE column only
by copying the table, and ``people`` cannot be dropped and renamed inside a migration's
transaction while other tables (audit batches) reference it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import integrity.sqlkit

revision = "0006_credentials"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC_DT = integrity.sqlkit.UTCDateTime
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: How long a token carried over from ``people.token_hash`` stays valid after the upgrade.
CARRIED_OVER_DAYS = 90


def upgrade() -> None:
    conn = op.get_bind()
    people = sa.table(
        "people", sa.column("person_id", sa.String), sa.column("token_hash", sa.String)
    )
    old = conn.execute(
        sa.select(people.c.person_id, people.c.token_hash).where(people.c.token_hash.is_not(None))
    ).all()
    conn.execute(people.update().values(token_hash=None))

    op.create_table(
        "credentials",
        sa.Column("credential_id", ID, autoincrement=True, nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=128), server_default="", nullable=False),
        sa.Column("created_at", UTC_DT(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UTC_DT(timezone=True), nullable=False),
        sa.Column("last_used_at", UTC_DT(timezone=True), nullable=True),
        sa.Column("revoked_at", UTC_DT(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.person_id"], name=op.f("fk_credentials_person_id_people")
        ),
        sa.PrimaryKeyConstraint("credential_id", name=op.f("pk_credentials")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_credentials_token_hash")),
    )
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credentials_person_id"), ["person_id"], unique=False)
    op.create_table(
        "os_users",
        sa.Column("os_user", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=64), nullable=False),
        sa.Column("mapped_at", UTC_DT(timezone=True), nullable=False),
        sa.Column("mapped_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.person_id"], name=op.f("fk_os_users_person_id_people")
        ),
        sa.PrimaryKeyConstraint("os_user", name=op.f("pk_os_users")),
    )
    with op.batch_alter_table("os_users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_os_users_person_id"), ["person_id"], unique=False)

    if old:
        now = datetime.now(UTC)  # a migration has no injected clock
        credentials = sa.table(
            "credentials",
            sa.column("person_id", sa.String),
            sa.column("token_hash", sa.String),
            sa.column("note", sa.String),
            sa.column("created_at", UTC_DT()),
            sa.column("created_by", sa.String),
            sa.column("expires_at", UTC_DT()),
        )
        conn.execute(
            credentials.insert(),
            [
                {
                    "person_id": person_id,
                    "token_hash": token_hash,
                    "note": "carried over from the person's single token",
                    "created_at": now,
                    "created_by": "migration",
                    "expires_at": now + timedelta(days=CARRIED_OVER_DAYS),
                }
                for person_id, token_hash in old
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("os_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_os_users_person_id"))
    op.drop_table("os_users")
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credentials_person_id"))
    op.drop_table("credentials")  # tokens issued since the upgrade are lost
