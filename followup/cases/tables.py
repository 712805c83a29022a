"""SQL tables owned by ``followup.cases``, on the shared metadata of :mod:`integrity.sqlkit`.

``rectification_cases``: each case's current state, materialised; its history is the
ledger's events about ``rectification:<id>`` (sealed in the Merkle log). One case per
kind, subject and period (a unique key), so a close can never open one twice. Written
on a unit of work's connection only, so each row commits with the events that record
it. Migrations: ``followup/migrations/0402_cases.py``, ``0403_case_deadlines.py``.
"""

from __future__ import annotations

import sqlalchemy as sa

from integrity.sqlkit import Id, UTCDateTime, metadata

cases = sa.Table(
    "rectification_cases",
    metadata,
    sa.Column("case_id", Id, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # window, staff, talk
    sa.Column("subject", sa.String(64), nullable=False),  # window id or staff id
    sa.Column("hall_id", sa.String(64)),
    sa.Column("period", sa.String(7), nullable=False),  # the month whose close opened it
    sa.Column("counted", sa.Integer, nullable=False),
    sa.Column("low_scores", sa.Integer, nullable=False),
    sa.Column("low_score_rate", sa.Float),
    sa.Column("low_rate_lo", sa.Float),
    sa.Column("low_rate_hi", sa.Float),
    sa.Column("score", sa.Float),
    sa.Column("rank", sa.Integer),
    sa.Column("mark", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("opened_event_id", sa.BigInteger, nullable=False),
    sa.Column("carried_from", sa.BigInteger),
    sa.Column("plan", sa.Text),
    sa.Column("planned_at", UTCDateTime),
    sa.Column("planned_by", sa.String(64)),
    sa.Column("notes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_note_at", UTCDateTime),
    sa.Column("checked_period", sa.String(7)),
    sa.Column("checked_counted", sa.Integer),
    sa.Column("checked_rate", sa.Float),
    sa.Column("checked_at", UTCDateTime),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("closed_by", sa.String(64)),
    sa.Column("close_reason", sa.Text),
    sa.Column("overdue_at", UTCDateTime),  # marked overdue (migration 0403)
    sa.Column("escalated_at", UTCDateTime),
    sa.Column("escalated_to", sa.String(64)),  # the hall supervisor (None: the admins)
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.UniqueConstraint("kind", "subject", "period", name="uq_rectification_cases_subject"),
    sa.Index("ix_rectification_cases_state", "state"),
    sa.Index("ix_rectification_cases_period", "period"),
)

#: The tables the cases migration creates.
TABLES = ("rectification_cases",)
