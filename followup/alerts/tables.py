"""SQL tables owned by ``followup.alerts``, on the shared metadata of :mod:`integrity.sqlkit`.

``alerts``: each alert's current state, materialised like ``rating_status``; its
history is the ledger's events about ``alert:<id>`` (sealed in the Merkle log). A
partial unique index keeps one alert per rating that is not void (``claims_rating``).
``alert_cursor``: the one row holding the projection's cursor, the highest ledger event
id it has read. ``alert_gaps``: ranges of event ids below the cursor that had not
committed when the cursor passed them (PostgreSQL hands out ids before commit), read
again until they appear or are older than the grace period. Written on a unit of
work's connection only, so each row commits with the ledger events that record it.
Migration: ``followup/migrations/0401_alerts.py``.
"""

from __future__ import annotations

import sqlalchemy as sa

from integrity.sqlkit import Id, UTCDateTime, metadata

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("alert_id", Id, primary_key=True, autoincrement=True),
    sa.Column("rating_id", sa.BigInteger, sa.ForeignKey("ratings.rating_id"), nullable=False),
    # False once void: a rating then may get a new alert (it counts again).
    sa.Column("claims_rating", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("window_id", sa.String(64), nullable=False),
    sa.Column("staff_id", sa.String(64)),
    sa.Column("service_type", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("respond_by", UTCDateTime, nullable=False),
    sa.Column("reply_by", UTCDateTime, nullable=False),
    sa.Column("via", sa.String(16), nullable=False),  # intake, replay, clear, reinstate
    sa.Column("cause_event_id", sa.BigInteger, nullable=False),  # the status event
    sa.Column("responded_at", UTCDateTime),
    sa.Column("responded_by", sa.String(64)),
    sa.Column("verified_at", UTCDateTime),
    sa.Column("callback", sa.String(16)),  # reached, not_reachable
    sa.Column("finding", sa.String(32)),  # service_problem, misunderstanding, malicious
    sa.Column("appeal_id", sa.BigInteger),
    sa.Column("note", sa.Text),
    sa.Column("rectified_at", UTCDateTime),
    sa.Column("action", sa.Text),
    sa.Column("replied_at", UTCDateTime),
    sa.Column("reply", sa.Text),  # what the rater sees on their receipt
    sa.Column("closed_at", UTCDateTime),
    sa.Column("voided_at", UTCDateTime),
    sa.Column("void_event_id", sa.BigInteger),  # the status event that ended the count
    sa.Column("respond_overdue_at", UTCDateTime),
    sa.Column("reply_overdue_at", UTCDateTime),
    sa.Column("escalated_at", UTCDateTime),
    sa.Column("escalated_to", sa.String(64)),  # the hall supervisor (None: the admins)
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Optimistic concurrency: every action bumps it; a stale writer gets Conflict.
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Index(
        "uq_alerts_rating_claim",
        "rating_id",
        unique=True,
        sqlite_where=sa.text("claims_rating"),
        postgresql_where=sa.text("claims_rating"),
    ),
    sa.Index("ix_alerts_rating_id", "rating_id"),
    sa.Index("ix_alerts_window_state", "window_id", "state"),
    sa.Index("ix_alerts_state_reply_by", "state", "reply_by"),
    sa.Index("ix_alerts_opened_at", "opened_at"),
    sa.Index("ix_alerts_staff_id", "staff_id"),
)

alert_cursor = sa.Table(
    "alert_cursor",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("last_event_id", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UTCDateTime),
)

alert_gaps = sa.Table(
    "alert_gaps",
    metadata,
    sa.Column("lo", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hi", sa.BigInteger, nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=False),
)

#: The tables the alerts migration creates.
TABLES = ("alerts", "alert_cursor", "alert_gaps")
