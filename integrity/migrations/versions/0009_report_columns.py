"""report columns: one score column per rubric dimension (ratings.score_1 .. score_8)

Reports average each dimension in SQL; reading the ``scores`` JSON of a million rows
costs seconds, a smallint column next to nothing. ``meta['score_columns']`` maps each
dimension to its slot; existing ratings are backfilled from their ``scores`` (slots in
the sorted order of the dimensions found).

Revision ID: 0009_report_columns
Revises: 0004
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0009_report_columns"
down_revision = "0005_intake_clients"
branch_labels = None
depends_on = None

SLOTS = 8  # integrity.adapters.tables.SCORE_SLOTS when this revision was written
KEY = "score_columns"


def upgrade() -> None:
    for i in range(1, SLOTS + 1):
        op.add_column("ratings", sa.Column(f"score_{i}", sa.SmallInteger(), nullable=True))
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        dims = sorted(
            str(d)
            for d in conn.execute(
                sa.text("SELECT DISTINCT jsonb_object_keys(scores::jsonb) FROM ratings")
            ).scalars()
        )
    else:
        dims = sorted(
            str(d)
            for d in conn.execute(
                sa.text("SELECT DISTINCT j.key FROM ratings, json_each(ratings.scores) AS j")
            ).scalars()
        )
    if not dims:
        return
    slots = {d: (i + 1 if i < SLOTS else None) for i, d in enumerate(dims)}
    conn.execute(
        sa.text("DELETE FROM meta WHERE key = :k"), {"k": KEY}
    )  # a re-run after a downgrade
    conn.execute(
        sa.text("INSERT INTO meta (key, value) VALUES (:k, :v)"),
        {"k": KEY, "v": json.dumps(slots, sort_keys=True, separators=(",", ":"))},
    )
    slotted = [(d, s) for d, s in slots.items() if s is not None]
    if conn.dialect.name == "postgresql":
        sets = ", ".join(
            f"score_{s} = (scores::jsonb ->> CAST(:d{s} AS text))::smallint" for _, s in slotted
        )
        conn.execute(sa.text(f"UPDATE ratings SET {sets}"), {f"d{s}": d for d, s in slotted})
        return
    # SQLite (embedded instances): row by row in Python, any dimension name
    update = sa.text(
        "UPDATE ratings SET "
        + ", ".join(f"score_{s} = :s{s}" for _, s in slotted)
        + " WHERE rating_id = :rid"
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT rating_id, scores FROM ratings WHERE rating_id > :last "
                "ORDER BY rating_id LIMIT 20000"
            ),
            {"last": last},
        ).all()
        if not rows:
            break
        params = []
        for rid, text in rows:
            scores = json.loads(text)
            params.append({"rid": rid, **{f"s{s}": scores.get(d) for d, s in slotted}})
        conn.execute(update, params)
        last = int(rows[-1][0])


def downgrade() -> None:
    op.execute(sa.text(f"DELETE FROM meta WHERE key = '{KEY}'"))
    for i in range(SLOTS, 0, -1):
        op.drop_column("ratings", f"score_{i}")
