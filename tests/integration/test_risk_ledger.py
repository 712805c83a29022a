"""Detector risk is on the ledger: append-only rows sealed through ``risk.scored`` events."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from integrity.adapters import tables as t
from integrity.adapters.sql import decode_risks, encode_risks
from integrity.app import App
from tests.factories import app_on_each_backend, rating

app = app_on_each_backend()


def verify_problems(app: App) -> list[str]:
    return app.log.verify(app.clock.now()).problems


def test_risk_round_trip_and_tamper(app: App) -> None:
    ids = [app.validate(rating()).rating_id for _ in range(4)]
    assert app.ledger.set_risk({ids[0]: 0.9, ids[1]: 0.25, ids[2]: 0.0}, at=app.clock.now()) == 2
    # unchanged values write nothing; a changed one is a new run
    assert app.ledger.set_risk({ids[0]: 0.9, ids[2]: 0.0}, at=app.clock.now()) == 0
    assert app.ledger.set_risk({ids[0]: 0.4, ids[3]: 1.7}, at=app.clock.now()) == 2
    app.log.seal(app.clock.now())
    assert verify_problems(app) == []
    assert app.ledger.rating(ids[0]).risk == pytest.approx(0.4)
    assert app.ledger.rating(ids[3]).risk == 1.0  # clipped to [0, 1]
    assert [e.kind for e in app.ledger.events_about("risk")] == ["risk.scored", "risk.scored"]

    with app.ledger.engine.begin() as conn:  # someone lowers a rating's risk by hand
        conn.execute(
            t.rating_status.update().where(t.rating_status.c.rating_id == ids[0]).values(risk=0.01)
        )
    assert any(f"rating {ids[0]}: risk" in p for p in verify_problems(app))
    with app.ledger.engine.begin() as conn:
        conn.execute(
            t.rating_status.update().where(t.rating_status.c.rating_id == ids[0]).values(risk=0.4)
        )
    assert verify_problems(app) == []

    with app.ledger.engine.begin() as conn:  # ... or rewrites the scoring history too
        eid, data = conn.execute(
            sa.select(t.risk_blocks.c.event_id, t.risk_blocks.c.data).order_by(
                t.risk_blocks.c.event_id
            )
        ).first()
        got_ids, got = decode_risks(data)
        assert got_ids.tolist() == [ids[0], ids[1]] and got.tolist() == [0.9, 0.25]
        got = got.copy()
        got[1] = 0.0
        conn.execute(
            t.risk_blocks.update()
            .where(t.risk_blocks.c.event_id == eid)
            .values(data=encode_risks(got_ids, got))
        )
        conn.execute(
            t.rating_status.update().where(t.rating_status.c.rating_id == ids[1]).values(risk=0.0)
        )
    problems = verify_problems(app)
    assert any(f"risk scores of event {eid} differ" in p for p in problems), problems

    with app.ledger.engine.begin() as conn:  # a block that is not one any more
        conn.execute(
            t.risk_blocks.update().where(t.risk_blocks.c.event_id == eid).values(data=b"RSK1")
        )
    problems = verify_problems(app)
    assert any(f"risk scores of event {eid} cannot be read" in p for p in problems), problems


def test_risk_rows_from_before_blocks_are_still_verified(app: App) -> None:
    """A ledger scored before risk blocks keeps its ``risk_scores`` rows: verify checks
    them against their event's digest, and a later block's values win over them."""
    ids = [app.validate(rating()).rating_id for _ in range(3)]
    assert app.ledger.set_risk({ids[0]: 0.5, ids[1]: 0.25}, at=app.clock.now()) == 2
    with app.ledger.engine.begin() as conn:  # the same run, as it was stored before blocks
        eid, data = conn.execute(sa.select(t.risk_blocks.c.event_id, t.risk_blocks.c.data)).one()
        got_ids, got = decode_risks(data)
        conn.execute(t.risk_blocks.delete())
        conn.execute(
            t.risk_scores.insert(),
            [
                {"event_id": eid, "rating_id": int(r), "risk": float(v)}
                for r, v in zip(got_ids, got, strict=True)
            ],
        )
    assert app.ledger.set_risk({ids[1]: 0.75, ids[2]: 0.125}, at=app.clock.now()) == 2
    app.log.seal(app.clock.now())
    assert verify_problems(app) == []
    assert [app.ledger.rating(i).risk for i in ids] == [0.5, 0.75, 0.125]
    with app.ledger.engine.begin() as conn:
        conn.execute(
            t.risk_scores.update().where(t.risk_scores.c.rating_id == ids[0]).values(risk=0.0)
        )
        conn.execute(
            t.rating_status.update().where(t.rating_status.c.rating_id == ids[0]).values(risk=0.0)
        )
    problems = verify_problems(app)
    assert any(f"risk scores of event {eid} differ" in p for p in problems), problems


def test_unknown_ratings_are_ignored(app: App) -> None:
    rid = app.validate(rating()).rating_id
    assert app.ledger.set_risk({rid: 0.5, rid + 1000: 0.9}) == 1
    with app.ledger.engine.connect() as conn:
        blocks = conn.execute(sa.select(t.risk_blocks.c.ratings, t.risk_blocks.c.data)).all()
    assert [n for n, _ in blocks] == [1]
    assert decode_risks(blocks[0][1])[0].tolist() == [rid]


def _accepted(app: App, n: int) -> list[int]:
    """``n`` accepted ratings written in one batch; every rating id, sorted."""
    from datetime import UTC, datetime

    from integrity.model import Status
    from integrity.ports import Pending

    now = datetime.now(UTC)
    batch = [
        Pending(
            app.hook.parse(rating(), received_at=now), Status.ACCEPTED, (), {}, app.core.rule_set_id
        )
        for _ in range(n)
    ]
    app.ledger.record_many(batch)
    with app.ledger.engine.connect() as conn:
        return sorted(r for (r,) in conn.execute(sa.select(t.rating_status.c.rating_id)))


def test_a_whole_ledgers_risks_at_once(app: App) -> None:
    """Thousands of ratings in one call (detect records a risk for every rating): read by
    id range, written in bulk; unchanged values and unknown ids still write nothing."""
    ids = _accepted(app, 6000)
    risks = {rid: (rid % 97) / 100 for rid in ids}
    risks[ids[-1] + 10_000] = 0.5  # unknown: ignored
    risks[ids[-1] + 1] = 0.5  # unknown, next to the known ids: ignored too
    changed = sum(1 for rid in ids if rid % 97)
    assert app.ledger.set_risk(risks, at=app.clock.now()) == changed
    assert app.ledger.set_risk(risks, at=app.clock.now()) == 0
    assert app.ledger.rating(ids[5]).risk == pytest.approx((ids[5] % 97) / 100)
    # against stored risks, zero or not: only the real changes
    again = {rid: (0.0 if rid % 3 == 0 else risks[rid]) for rid in ids}
    assert app.ledger.set_risk(again, at=app.clock.now()) == sum(
        1 for rid in ids if rid % 3 == 0 and rid % 97
    )
    assert [app.ledger.rating(i).risk for i in ids[:6]] == [again[i] for i in ids[:6]]
    app.log.seal(app.clock.now())
    assert verify_problems(app) == []


def test_digest_columns_is_the_row_digest() -> None:
    """The digest of two columns, built by array operations for risks as stored, is the
    digest of the rows written one by one; other values (not a whole number of
    millionths, -0.0, out of [0, 1]) take the row-by-row path and agree too."""
    import numpy as np

    from integrity.adapters.sql import risk_digest, risk_digest_columns

    rng = np.random.default_rng(7)
    ids = np.unique(rng.integers(100, 10**12, 250_001))
    ids[:4] = [0, 9, 10, 99]
    ids[-1] = 10**18 - 1
    vals = np.round(rng.random(len(ids)), 6)
    vals[:3] = [0.0, 1.0, 0.000001]
    for risks in (vals, np.array([0.5, -0.0, 0.1234567, 1.5] + [0.25] * (len(ids) - 4))):
        rows = list(zip(ids.tolist(), risks.tolist(), strict=True))
        assert risk_digest_columns(ids, risks) == risk_digest(rows)
    assert risk_digest_columns(ids[:0], vals[:0]) == risk_digest([])


def test_risks_written_in_bulk_read_back_exactly(app: App) -> None:
    """Thousands of risks in one call are stored as exactly the floats given (rounded to
    6 decimals) on each backend (SQLite: one statement per slice, each row packed as one
    number); a value that cannot be packed (-0.0) is still written, row by row."""
    ids = _accepted(app, 3000)
    risks = {rid: ((rid * 7919) % 1_000_001) / 1_000_000 for rid in ids}
    risks[ids[0]] = 1.0
    risks[ids[1]] = 0.3333333  # rounded to 0.333333
    expected = {rid: round(v, 6) for rid, v in risks.items()}
    assert app.ledger.set_risk(risks, at=app.clock.now()) == sum(1 for v in expected.values() if v)
    with app.ledger.engine.connect() as conn:
        got = dict(
            conn.execute(sa.select(t.rating_status.c.rating_id, t.rating_status.c.risk)).all()
        )
    assert got == expected  # the same floats, bit for bit
    assert got[ids[1]] == 0.333333
    # -0.0 is not packed: written row by row, the same as 0
    assert app.ledger.set_risk({ids[0]: -0.0, ids[2]: 0.5}, at=app.clock.now()) == 2
    assert app.ledger.rating(ids[0]).risk == 0.0
    assert app.ledger.rating(ids[2]).risk == 0.5
    app.log.seal(app.clock.now())
    assert verify_problems(app) == []


def test_risks_on_a_sqlite_without_json_are_written_row_by_row(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SQLite older than 3.38 (no built-in JSON, so no packed statement): the same
    risks, written row by row."""
    import sqlite3

    if app.ledger.dialect != "sqlite":
        pytest.skip("SQLite's own fallback")
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 37, 2))
    ids = [app.validate(rating()).rating_id for _ in range(3)]
    assert app.ledger.set_risk({ids[0]: 0.125, ids[1]: 1.0, ids[2]: 0.0}, at=app.clock.now()) == 2
    assert [app.ledger.rating(i).risk for i in ids] == [0.125, 1.0, 0.0]
    app.log.seal(app.clock.now())
    assert verify_problems(app) == []
