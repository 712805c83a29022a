"""SQL schema of the score ledger (SQLAlchemy Core). Alembic migrations mirror it.

Append-only by design: ``ratings`` and ``events`` rows are inserted, never updated or
deleted. ``rating_status`` is the one materialised view (current status per rating),
updated in the same transaction as the event that changes it and checked against the
events by ``integrity ledger verify``. ``log_leaves`` / ``log_head`` / ``checkpoints``
are the RFC 9162 Merkle log that seals events after the fact (each checkpoint row is
recorded by a ``ledger.checkpoint`` event too). Rule sets, people, venues and the
service registry are configuration tables, edited in place and sealed whole with a
``config.sealed`` event on every change (``integrity/config_tables.py``).
"""

from __future__ import annotations

import sqlalchemy as sa

from integrity.sqlkit import Hash, Id, Pseudonym, UTCDateTime, metadata

#: How many rubric dimensions get a score column of their own (``ratings.score_N``);
#: dimensions beyond these are read from the ``scores`` JSON (slower, same figures).
SCORE_SLOTS = 8
#: The ``meta`` key of the dimension -> score column slot map (canonical JSON).
SCORE_COLUMNS_KEY = "score_columns"

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

rule_sets = sa.Table(
    "rule_sets",
    metadata,
    sa.Column("rule_set_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("activated_at", UTCDateTime, nullable=False),
)

ratings = sa.Table(
    "ratings",
    metadata,
    sa.Column(
        "rating_id",
        Id,
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("fingerprint", Hash, nullable=False, unique=True),
    sa.Column("ticket_id", sa.String(128), nullable=False, index=True),
    # True for the first rating recorded for its ticket; a partial unique index makes
    # "one service, one rating" hold across concurrent workers.
    sa.Column("claims_ticket", sa.Boolean, nullable=False),
    sa.Column("window_id", sa.String(64), nullable=False),
    sa.Column("staff_id", sa.String(64)),
    sa.Column("service_type", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("served_at", UTCDateTime),
    sa.Column("submitted_at", UTCDateTime, nullable=False),
    sa.Column("submitted_at_given", sa.Boolean, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("occurred_at", UTCDateTime, nullable=False, index=True),
    sa.Column("scores", sa.Text, nullable=False),  # canonical JSON: dimension -> int
    sa.Column("composite", sa.Float, nullable=False),
    sa.Column("comment", sa.Text),
    # Not indexed: no query looks a rating up by its address or device (detection reads
    # them as columns), and an index of hashed keys costs every write a random page.
    sa.Column("ip_hash", Pseudonym, nullable=False),
    sa.Column("prefix_hash", Pseudonym, nullable=False),
    sa.Column("device_hash", Pseudonym, nullable=False),
    sa.Column("rule_set_id", sa.String(32), nullable=False),
    # The intake client that sent it (``intake_clients.name``, or ``cli`` / ``open``);
    # NULL for ratings recorded before clients existed or through the Python API. Also in
    # the decision event's evidence, so the Merkle log seals it.
    sa.Column("client_id", sa.String(64)),
    # The scores again, one column per rubric dimension, so reports average them in SQL:
    # ``meta['score_columns']`` maps each dimension ever seen to its slot 1..SCORE_SLOTS
    # (assigned once, never moved). Written with the row; not covered by the Merkle
    # leaf (``scores`` is), so ``ledger verify`` checks them against ``scores``.
    *[sa.Column(f"score_{i}", sa.SmallInteger) for i in range(1, SCORE_SLOTS + 1)],
    sa.Index(
        "uq_ratings_ticket_claim",
        "ticket_id",
        unique=True,
        sqlite_where=sa.text("claims_ticket"),
        postgresql_where=sa.text("claims_ticket"),
    ),
    sa.Index("ix_ratings_window_occurred", "window_id", "occurred_at"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column(
        "event_id",
        Id,
        primary_key=True,
        autoincrement=True,
    ),
    # The rating an event is about (NULL for events about no rating). Not a foreign key:
    # the database would check it for every row of a batch (a lookup and a row lock in
    # ``ratings``, a third of the server's work on PostgreSQL). The one writer
    # (``SqlLedger``) writes a rating and its events in one transaction, and
    # ``integrity ledger verify`` names any event or status row whose rating is missing.
    sa.Column("rating_id", sa.BigInteger, index=True),
    sa.Column("subject", sa.String(128)),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16)),
    sa.Column("reasons", sa.Text, nullable=False),  # JSON list of codes
    sa.Column("rule_set_id", sa.String(32)),
    sa.Column("evidence", sa.Text, nullable=False),  # canonical JSON object
    sa.Column("at", UTCDateTime, nullable=False),
    # Events by subject (a case, a configuration table, an alert); decisions have none,
    # so they stay out of it (no cost on the write path). ``subject = ...`` and
    # ``subject IN (...)`` imply ``subject IS NOT NULL``: both databases then use it.
    sa.Index(
        "ix_events_subject",
        "subject",
        sqlite_where=sa.text("subject IS NOT NULL"),
        postgresql_where=sa.text("subject IS NOT NULL"),
    ),
    # The newest event of a kind (which registry, venues, periods are current) without
    # scanning the ledger; decisions, most of the ledger, stay out of it (no cost on
    # the write path). Queries name ``kind <> 'decision'`` so SQLite uses it.
    sa.Index(
        "ix_events_kind_event_id",
        "kind",
        "event_id",
        sqlite_where=sa.text("kind <> 'decision'"),
        postgresql_where=sa.text("kind <> 'decision'"),
    ),
)

rating_status = sa.Table(
    "rating_status",
    metadata,
    # A rating's id (not a foreign key, as ``events.rating_id``: checked by verify).
    sa.Column("rating_id", sa.BigInteger, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("reasons", sa.Text, nullable=False),  # ';'-joined codes of the last status event
    sa.Column("last_event_id", sa.BigInteger, nullable=False),
    # Combined detector risk in [0, 1]; 0 until a detector scores the rating.
    sa.Column("risk", sa.Float, nullable=False, server_default="0"),
    # Optimistic concurrency: bumped by every status change.
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
)

log_leaves = sa.Table(
    "log_leaves",
    metadata,
    sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
)

log_head = sa.Table(
    "log_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("frontier", sa.Text, nullable=False),  # JSON compact range
    sa.Column("sealed_at", UTCDateTime, nullable=False),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

venues = sa.Table(
    "venues",
    metadata,
    sa.Column("venue_id", sa.String(64), primary_key=True),
    sa.Column("networks", sa.Integer, nullable=False),  # how many networks were registered
)

venue_addresses = sa.Table(
    "venue_addresses",
    metadata,
    sa.Column("address_hash", Pseudonym, primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # "ip" or "prefix"
    sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.venue_id"), nullable=False),
)

kiosks = sa.Table(
    "kiosks",
    metadata,
    sa.Column("device_hash", Pseudonym, primary_key=True),
    sa.Column("venue_id", sa.String(64), sa.ForeignKey("venues.venue_id"), nullable=False),
    sa.Column("window_id", sa.String(64), nullable=False),
)

# People who act on the ledger: staff, reviewers, admins, auditors, window heads, hall
# supervisors. Roles are a ';'-joined set. How they sign in is in `credentials` and
# `os_users`.
people = sa.Table(
    "people",
    metadata,
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, server_default=""),
    sa.Column("unit", sa.String(64), nullable=False, server_default=""),
    sa.Column("roles", sa.String(256), nullable=False),
    sa.Column("windows", sa.Text, nullable=False, server_default=""),  # ';'-joined window ids
    # Retired (migration 0006_credentials moved tokens into `credentials`); always NULL.
    sa.Column("token_hash", sa.String(64), unique=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Personal tokens: several per person, each with its own id, expiry and revocation. The
# token itself is shown once when issued; only its SHA-256 is stored.
credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("credential_id", Id, primary_key=True, autoincrement=True),
    sa.Column(
        "person_id", sa.String(64), sa.ForeignKey("people.person_id"), nullable=False, index=True
    ),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("note", sa.String(128), nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("last_used_at", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
    sa.Column("revoked_by", sa.String(64)),
)

# Operating-system accounts of a shared host, each mapped to the person who uses it: the
# CLI in direct-database mode signs that person in from the real uid.
os_users = sa.Table(
    "os_users",
    metadata,
    sa.Column("os_user", sa.String(64), primary_key=True),
    sa.Column(
        "person_id", sa.String(64), sa.ForeignKey("people.person_id"), nullable=False, index=True
    ),
    sa.Column("mapped_at", UTCDateTime, nullable=False),
    sa.Column("mapped_by", sa.String(64), nullable=False),
)

# Detector risk as it was written before ``risk_blocks`` (kept for ledgers that have
# rows in it): one row per rating whose risk a scoring run changed. The
# run's ``risk.scored`` event carries the SHA-256 of its rows, so the Merkle log seals
# them, and ``rating_status.risk`` (the latest value) is checked against them by verify.
risk_scores = sa.Table(
    "risk_scores",
    metadata,
    sa.Column(
        "event_id",
        sa.BigInteger,
        sa.ForeignKey("events.event_id"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column(
        "rating_id",
        sa.BigInteger,
        sa.ForeignKey("ratings.rating_id"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("risk", sa.Float, nullable=False),
    sa.Index("ix_risk_scores_rating_event", "rating_id", "event_id"),
)

# Detector risk as columns: one row per ``risk.scored`` event, holding the ratings whose
# risk the run changed and their new values (``sql.encode_risks``: rating ids and risks,
# each compressed). The event's evidence carries the SHA-256 of those rows, so the log
# seals them; verify decodes every block. Ledgers from before keep their ``risk_scores``
# rows (verify reads both); new runs write blocks only (a whole ledger's risks is one
# row, not a row per rating).
risk_blocks = sa.Table(
    "risk_blocks",
    metadata,
    sa.Column(
        "event_id",
        sa.BigInteger,
        sa.ForeignKey("events.event_id"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("ratings", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

# The service registry: halls, windows, roster (replaced whole by `registry load`, with
# a `registry.loaded` event; configuration tables, sealed with `config.sealed` events).
halls = sa.Table(
    "halls",
    metadata,
    sa.Column("hall_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, server_default=""),
    sa.Column("supervisor", sa.String(64)),
)

windows = sa.Table(
    "windows",
    metadata,
    sa.Column("window_id", sa.String(64), primary_key=True),
    sa.Column("hall_id", sa.String(64), sa.ForeignKey("halls.hall_id"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False, server_default=""),
    sa.Column("head", sa.String(64)),
    sa.Column("service_types", sa.Text, nullable=False, server_default=""),  # ';'-joined
)

roster = sa.Table(
    "roster",
    metadata,
    sa.Column("entry_id", Id, primary_key=True, autoincrement=True),
    sa.Column("staff_id", sa.String(64), nullable=False, index=True),
    sa.Column("window_id", sa.String(64), sa.ForeignKey("windows.window_id"), nullable=False),
    sa.Column("start_date", sa.Date, nullable=False),
    sa.Column("end_date", sa.Date),
)

# Closed reporting periods (months in the rule set's time zone): written with the
# `period.closed` event that closed them, in one unit of work; never reopened here.
periods = sa.Table(
    "periods",
    metadata,
    sa.Column("period", sa.String(7), primary_key=True),  # YYYY-MM
    sa.Column("closed_at", UTCDateTime, nullable=False),
    sa.Column("closed_by", sa.String(128), nullable=False),
    sa.Column(
        "event_id", sa.BigInteger, sa.ForeignKey("events.event_id"), nullable=False, unique=True
    ),
)

# Intake clients: the services allowed to submit ratings over HTTP. A key is stored only
# as its SHA-256; ``key_id`` is the key's public prefix (how a presented key finds its
# row, and what ``clients list`` shows). Changes are ledger events (client.*).
intake_clients = sa.Table(
    "intake_clients",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("halls", sa.Text, nullable=False, server_default=""),  # ';'-joined hall ids
    sa.Column("windows", sa.Text, nullable=False, server_default=""),  # ';'-joined window ids
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("rotated_at", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
)

# Service records from the queue system (``integrity tickets load``, ``POST /v1/tickets``):
# one row per ticket, written once and never changed (a different record for a known
# ticket is refused). Operational data, not configuration: not sealed; the events a
# late record causes (``clear``, ``hold``) carry what the record said as evidence.
service_records = sa.Table(
    "service_records",
    metadata,
    sa.Column("ticket_id", sa.String(128), primary_key=True),
    sa.Column("window_id", sa.String(64), nullable=False),
    sa.Column("staff_id", sa.String(64)),
    sa.Column("served_at", UTCDateTime, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    # The intake client that sent it (``intake_clients.name``), or ``cli``.
    sa.Column("client_id", sa.String(64), nullable=False),
)
