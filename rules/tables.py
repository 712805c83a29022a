"""SQL tables owned by `rules`, on the ledger's shared metadata (see integrity/adapters/tables.py).

Detection keeps its own bookkeeping here; every status change it causes is still a
ledger event (``hold``, ``clear``, ``confirm``). Rows are only ever inserted.

* ``detect_runs``: one row per ``integrity detect`` run (range, counts, rule set, and its
  watermark in the ledger's events: a whole-ledger run with nothing new since the last
  one has nothing to do).
* ``detect_holds``: which evidence (fingerprint) held which rating, and by which event;
  a run skips a (rating, fingerprint) it has already acted on, so running twice
  changes nothing.
* ``detect_cleared``: evidence a reviewer cleared a rating of; never held again for it.
* ``detect_cases``: window-level findings (coerced high scores) opened for review; a
  case's ratings are those ``detect_holds`` names with the case's fingerprint.
* ``review_escalations``: overdue held ratings (``rating:<id>``) and window cases
  (``case:window:<id>``) escalated to the admins, one row per item and deadline, so an
  item is escalated again only once its deadline moved.

Migrations: ``rules/migrations/0300_detect.py``, ``0301_review.py``,
``0302_detect_watermark.py``. (The newest event of a kind, which detection's closing
projections ask per batch, is one lookup in the core's partial index on ``events``,
migration ``0011_events_kind_index``.)
"""

from __future__ import annotations

import sqlalchemy as sa

from integrity.sqlkit import UTCDateTime, metadata

detect_runs = sa.Table(
    "detect_runs",
    metadata,
    sa.Column(
        "run_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("since", UTCDateTime),
    sa.Column("until", UTCDateTime),
    sa.Column("rule_set_id", sa.String(32), nullable=False),
    sa.Column("ratings", sa.Integer, nullable=False, server_default="0"),
    sa.Column("flags", sa.Integer, nullable=False, server_default="0"),
    sa.Column("held", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cases", sa.Integer, nullable=False, server_default="0"),
    sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.false()),
    # the run's watermark: the newest event id before it read, and after its own writes
    sa.Column("events_from", sa.BigInteger),
    sa.Column("events_to", sa.BigInteger),
    # the SHA-256 of the columnar snapshot of what it read (whole-ledger runs), if kept
    sa.Column("snapshot_sha256", sa.String(64)),
)

detect_holds = sa.Table(
    "detect_holds",
    metadata,
    sa.Column("rating_id", sa.BigInteger, sa.ForeignKey("ratings.rating_id"), primary_key=True),
    sa.Column("fingerprint", sa.String(16), primary_key=True),
    sa.Column("detector", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.BigInteger, nullable=False),
)

detect_cleared = sa.Table(
    "detect_cleared",
    metadata,
    sa.Column("rating_id", sa.BigInteger, sa.ForeignKey("ratings.rating_id"), primary_key=True),
    sa.Column("fingerprint", sa.String(16), primary_key=True),
    sa.Column("cleared_by", sa.String(64), nullable=False),
    sa.Column("cleared_at", UTCDateTime, nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
)

detect_cases = sa.Table(
    "detect_cases",
    metadata,
    sa.Column("subject", sa.String(128), primary_key=True),  # case:window:<id>
    sa.Column("fingerprint", sa.String(16), nullable=False),
    sa.Column("window_id", sa.String(64), nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.BigInteger, nullable=False),
    sa.Column("ratings_held", sa.Integer, nullable=False, server_default="0"),
)


review_escalations = sa.Table(
    "review_escalations",
    metadata,
    sa.Column("item", sa.String(128), primary_key=True),  # rating:<id> | case:window:<id>
    sa.Column("due_at", UTCDateTime, primary_key=True),
    sa.Column("window_id", sa.String(64), nullable=False),
    sa.Column("ratings", sa.Integer, nullable=False),  # held ratings overdue when escalated
    sa.Column("escalated_at", UTCDateTime, nullable=False),
    sa.Column("escalated_by", sa.String(64), nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
)


def metadata_tables() -> tuple[sa.Table, ...]:
    """Every table detection owns (children first: safe order to empty them)."""
    return (review_escalations, detect_holds, detect_cleared, detect_cases, detect_runs)
