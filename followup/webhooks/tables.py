"""SQL tables owned by ``followup.webhooks``, on the shared metadata of :mod:`integrity.sqlkit`.

``webhook_endpoints``: one row per endpoint (removed ones are kept, without their
secret, so the delivery log still names them), a sealed configuration table (see
:data:`CONFIG_TABLES`). ``webhook_leases``: which sender holds an endpoint, until when
(one row per endpoint once held). ``webhook_outbox``: the one row holding
the dispatcher's cursor, the highest ledger event id it has read. ``webhook_gaps``:
ranges of event ids below the cursor that were not yet committed when the cursor
passed them (PostgreSQL hands out ids before commit), re-read until they appear or
are older than the grace period. ``webhook_deliveries``: one row per (endpoint, event),
unique, with its status and retry schedule. ``webhook_attempts``: every HTTP attempt,
only ever inserted. Written on a unit of work's connection only.
Migrations: ``followup/migrations/0400_followup.py``, ``0404_webhook_leases.py``.
"""

from __future__ import annotations

import sqlalchemy as sa

from integrity.sqlkit import Id, UTCDateTime, metadata

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("endpoint_id", Id, primary_key=True, autoincrement=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", sa.Text, nullable=False),  # canonical JSON list of kinds / "family.*"
    # The signing secret, encrypted with a key derived from the instance secret key
    # (followup/webhooks/signing.py); empty once the endpoint is removed.
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # enabled, disabled, removed
    # It receives the events after its webhook.added / webhook.enabled event and, while
    # disabled, before its webhook.disabled event.
    sa.Column("since_event_id", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("until_event_id", sa.BigInteger),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# A sender holds the endpoint until ``lease_until`` (one sender per endpoint keeps it in
# order); empty once released. Kept apart from the endpoint's row, which is sealed
# configuration: the lease changes on every delivery round.
webhook_leases = sa.Table(
    "webhook_leases",
    metadata,
    sa.Column(
        "endpoint_id",
        sa.BigInteger,
        sa.ForeignKey("webhook_endpoints.endpoint_id"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("lease_until", UTCDateTime),
)

webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("last_event_id", sa.BigInteger, nullable=False),  # the cursor
    sa.Column("updated_at", UTCDateTime),
)

webhook_gaps = sa.Table(
    "webhook_gaps",
    metadata,
    sa.Column("lo", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hi", sa.BigInteger, nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("delivery_id", Id, primary_key=True, autoincrement=True),
    sa.Column(
        "endpoint_id",
        sa.BigInteger,
        sa.ForeignKey("webhook_endpoints.endpoint_id"),
        nullable=False,
    ),
    sa.Column("event_id", sa.BigInteger, sa.ForeignKey("events.event_id"), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, delivered, dead, cancelled
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # The maximum age counts from here (set again when a dead letter is replayed).
    sa.Column("queued_at", UTCDateTime, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_attempt_at", UTCDateTime),
    sa.Column("last_result", sa.String(200)),
    sa.Column("finished_at", UTCDateTime),  # delivered, dead or cancelled
    sa.UniqueConstraint("endpoint_id", "event_id"),
    sa.Index("ix_webhook_deliveries_endpoint_status", "endpoint_id", "status", "event_id"),
    sa.Index("ix_webhook_deliveries_status", "status"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("attempt_id", Id, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.BigInteger,
        sa.ForeignKey("webhook_deliveries.delivery_id"),
        nullable=False,
        index=True,
    ),
    sa.Column("number", sa.Integer, nullable=False),  # 1 for a delivery's first attempt
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("status_code", sa.Integer),  # the HTTP status, when the receiver answered
    sa.Column("error", sa.String(200)),  # why not, when it did not (or a non-2xx status)
    sa.Column("duration_ms", sa.Float, nullable=False),
)

#: The tables the followup migrations create.
TABLES = (
    "webhook_endpoints",
    "webhook_leases",
    "webhook_outbox",
    "webhook_gaps",
    "webhook_deliveries",
    "webhook_attempts",
)

#: The webhooks' configuration tables (who gets which events, at which address, signed
#: with which secret): sealed by every command that changes them (``config.sealed``),
#: checked by ``ledger verify``. Not the leases, the outbox, the deliveries or the
#: attempts: they change on every round by design.
CONFIG_TABLES: tuple[str, ...] = (webhook_endpoints.name,)
