"""SQL tables owned by ``appeals``, on the shared metadata of :mod:`integrity.sqlkit`.

``appeals`` holds each appeal's current state, materialised like ``rating_status``:
its history is the ledger's events about ``appeal:<id>`` (sealed in the Merkle log),
and ``integrity appeal verify`` replays them through the transition table. Rows of
``appeal_reviewers``, ``appeal_votes`` and ``appeal_evidence`` are only ever inserted.
Written on a unit of work's connection only, so each row commits with the ledger
events that record it. Migration: ``appeals/migrations/0200_appeals.py``.
"""

from __future__ import annotations

import sqlalchemy as sa

from integrity.sqlkit import UTCDateTime, metadata

appeals = sa.Table(
    "appeals",
    metadata,
    sa.Column(
        "appeal_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("rating_id", sa.BigInteger, sa.ForeignKey("ratings.rating_id"), nullable=False),
    # True for the one admitted appeal of a rating; a partial unique index makes
    # "one appeal per rating" hold across concurrent filings.
    sa.Column("claims_rating", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("appellant_id", sa.String(64), nullable=False, index=True),
    sa.Column("appellant_unit", sa.String(64), nullable=False, server_default=""),
    sa.Column("window_id", sa.String(64), nullable=False),
    sa.Column("ground", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("ineligible_reasons", sa.Text, nullable=False, server_default=""),  # ';'-joined
    sa.Column("round", sa.Integer, nullable=False, server_default="1"),
    sa.Column("filed_at", UTCDateTime, nullable=False, index=True),
    sa.Column("round_started_at", UTCDateTime, nullable=False),
    sa.Column("due_at", UTCDateTime),
    sa.Column("decided_at", UTCDateTime),
    sa.Column("decided_by", sa.String(64)),
    sa.Column("decision_reason", sa.Text),
    sa.Column("used_automated_evidence", sa.Boolean),
    sa.Column("prior_outcome", sa.String(16)),  # the outcome a reopen set aside
    sa.Column("reversals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("escalations", sa.Integer, nullable=False, server_default="0"),
    sa.Column("reopens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Optimistic concurrency: every action bumps it; a stale writer gets Conflict.
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Index(
        "uq_appeals_rating_claim",
        "rating_id",
        unique=True,
        sqlite_where=sa.text("claims_rating"),
        postgresql_where=sa.text("claims_rating"),
    ),
    sa.Index("ix_appeals_rating_id", "rating_id"),
    sa.Index("ix_appeals_state_due_at", "state", "due_at"),
)

appeal_reviewers = sa.Table(
    "appeal_reviewers",
    metadata,
    sa.Column("appeal_id", sa.BigInteger, sa.ForeignKey("appeals.appeal_id"), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("reviewer_id", sa.String(64), primary_key=True),
    sa.Column("assigned_by", sa.String(64), nullable=False),
    sa.Column("assigned_at", UTCDateTime, nullable=False),
)

appeal_votes = sa.Table(
    "appeal_votes",
    metadata,
    sa.Column("appeal_id", sa.BigInteger, sa.ForeignKey("appeals.appeal_id"), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True, autoincrement=False),
    # One vote per reviewer per round, enforced by the key.
    sa.Column("reviewer_id", sa.String(64), primary_key=True),
    sa.Column("vote", sa.String(8), nullable=False),  # uphold | reject
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("used_automated_evidence", sa.Boolean, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

appeal_evidence = sa.Table(
    "appeal_evidence",
    metadata,
    sa.Column("appeal_id", sa.BigInteger, sa.ForeignKey("appeals.appeal_id"), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("added_by", sa.String(64), nullable=False),
    sa.Column("added_at", UTCDateTime, nullable=False),
)
