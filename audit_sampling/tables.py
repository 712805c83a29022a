"""SQL tables owned by ``audit_sampling``, declared on the shared :data:`integrity.sqlkit.metadata`.

Migration ``0100_audit`` mirrors them. Every change to these rows is made on the
connection of a ledger unit of work, in the same transaction as the ledger event
that records it, so the ledger's Merkle log covers what the audit did. The tables in
:data:`CONFIG_TABLES` (what was sampled and who audits which batch) are configuration
tables: the composition root registers them with the ledger, and every unit of work
that changes them ends with ``uow.seal_tables(...)``, so ``ledger verify`` names an
edit made behind the engine's back. Findings are not among them (each finding is a
ledger event of its own); the items, the sample's membership, are (see
:data:`CONFIG_TABLES`). Reads go through the ledger's reading connection.
"""

from __future__ import annotations

import sqlalchemy as sa

from integrity.config_tables import PARTITION_INFO
from integrity.sqlkit import Hash, Id, UTCDateTime, metadata

# A frame: the population of one period as of a ledger checkpoint. ``content`` is the
# published frame file, byte-exact, zlib-compressed; ``frame_hash`` its SHA-256.
audit_frames = sa.Table(
    "audit_frames",
    metadata,
    sa.Column("frame_id", Id, primary_key=True, autoincrement=True),
    sa.Column("frame_hash", Hash, nullable=False, unique=True),
    sa.Column("period", sa.String(16), nullable=False, index=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("period_start", UTCDateTime, nullable=False),
    sa.Column("period_end", UTCDateTime, nullable=False),
    sa.Column("checkpoint", sa.String(160), nullable=False),
    sa.Column("log_size", sa.BigInteger, nullable=False),
    sa.Column("ratings", sa.BigInteger, nullable=False),
    sa.Column("strata", sa.Text, nullable=False),  # canonical JSON: window id -> ratings
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
)

# A sample: one seed on one frame. Both are unique: a seed is locked to the first
# frame it was used on, and a frame is drawn once.
audit_samples = sa.Table(
    "audit_samples",
    metadata,
    sa.Column("sample_id", Id, primary_key=True, autoincrement=True),
    sa.Column(
        "frame_id",
        sa.BigInteger,
        sa.ForeignKey("audit_frames.frame_id"),
        nullable=False,
        unique=True,
    ),
    sa.Column("seed", sa.String(256), nullable=False, unique=True),
    sa.Column("seed_note", sa.Text, nullable=False, server_default=""),
    sa.Column("algorithm", sa.String(64), nullable=False),
    sa.Column("rate", sa.String(32), nullable=False),  # exact decimal text, e.g. "0.1"
    sa.Column("min_per_stratum", sa.Integer, nullable=False),
    sa.Column("risk_extra", sa.Integer, nullable=False, server_default="0"),
    sa.Column("risk_min", sa.Float, nullable=False, server_default="0"),
    sa.Column("risk_take", sa.Integer, nullable=False, server_default="0"),
    sa.Column("risk_history", sa.Text, nullable=False, server_default="[]"),
    sa.Column("drawn_at", UTCDateTime, nullable=False),
    sa.Column("drawn_by", sa.String(64), nullable=False),
)

# One row per window of a sample: its population, the take the rate gave, the
# current take (grown by expansions and replacements) and why it grew (JSON list).
audit_strata = sa.Table(
    "audit_strata",
    metadata,
    sa.Column(
        "sample_id", sa.BigInteger, sa.ForeignKey("audit_samples.sample_id"), primary_key=True
    ),
    sa.Column("window_id", sa.String(64), primary_key=True),
    sa.Column("population", sa.BigInteger, nullable=False),
    sa.Column("base_take", sa.Integer, nullable=False),
    sa.Column("take", sa.Integer, nullable=False),
    sa.Column("history", sa.Text, nullable=False),
)

audit_batches = sa.Table(
    "audit_batches",
    metadata,
    sa.Column("batch_id", Id, primary_key=True, autoincrement=True),
    sa.Column("sample_id", sa.BigInteger, sa.ForeignKey("audit_samples.sample_id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("auditor_id", sa.String(64), sa.ForeignKey("people.person_id"), index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("assigned_at", UTCDateTime),
    sa.UniqueConstraint("sample_id", "seq"),
)

# A sampled rating. ``rank``: its place in its window's priority order (uniform
# stratum), ``risk_rank`` its place in the risk order (risk stratum); either or both.
# Sealed per sample (partition column ``sample_id``, see ``integrity.config_tables``).
audit_items = sa.Table(
    "audit_items",
    metadata,
    sa.Column(
        "sample_id", sa.BigInteger, sa.ForeignKey("audit_samples.sample_id"), primary_key=True
    ),
    sa.Column("rating_id", sa.BigInteger, sa.ForeignKey("ratings.rating_id"), primary_key=True),
    sa.Column("window_id", sa.String(64), nullable=False),
    sa.Column("rank", sa.Integer),
    sa.Column("risk_rank", sa.Integer),
    sa.Column("ticket", sa.String(96), nullable=False),
    sa.Column("risk", sa.Float, nullable=False, server_default="0"),
    sa.Column("added", sa.String(16), nullable=False),  # draw | expansion | replacement
    sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("audit_batches.batch_id"), index=True),
    info={PARTITION_INFO: "sample_id"},
)

# An auditor's verdict on one sampled rating; final once recorded.
audit_findings = sa.Table(
    "audit_findings",
    metadata,
    sa.Column(
        "sample_id", sa.BigInteger, sa.ForeignKey("audit_samples.sample_id"), primary_key=True
    ),
    sa.Column("rating_id", sa.BigInteger, sa.ForeignKey("ratings.rating_id"), primary_key=True),
    sa.Column(
        "batch_id",
        sa.BigInteger,
        sa.ForeignKey("audit_batches.batch_id"),
        nullable=False,
        index=True,
    ),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("auditor_id", sa.String(64), nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("void_event_id", sa.BigInteger),
    sa.Column("replacement_id", sa.BigInteger),
)


#: The audit's configuration tables (sealed on every change; checked by ``ledger verify``).
#: ``audit_items`` is among them: it is the sample's membership (which ratings are
#: audited, their ranks, and the batch each is in), written only by the draw, an
#: expansion, a replacement and batching, each of which seals it; an edit behind the
#: engine's back would drop a rating from the audit or move it to another batch. The
#: auditors' verdicts live in ``audit_findings``, which is not configuration: each
#: finding is a ledger event of its own and its row is only ever inserted. It is sealed
#: per sample (one ``config.sealed`` event per sample id, subject
#: ``table:audit_items/sample_id=<id>``): each of those writes digests the items of
#: the sample it changes (twice: checked, then sealed), not every sample ever drawn;
#: ``ledger verify`` digests every sample's (``bench/bench_config_seal.py``).
CONFIG_TABLES: tuple[str, ...] = (
    audit_frames.name,
    audit_samples.name,
    audit_strata.name,
    audit_batches.name,
    audit_items.name,
)
