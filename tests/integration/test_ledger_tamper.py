"""Tamper evidence on SQLite and PostgreSQL: ``verify`` finds edited, deleted and inserted rows.

One ledger per backend is filled and checkpointed once; each tamper test edits it behind
the engine's back with plain SQL, checks that ``MerkleLog.verify`` names the right
rating / event / leaf, then undoes the edit and checks that verify is clean again (so no
problem is reported where there is none). Appends after a checkpoint get their own
ledger.

What the log cannot see, by design (documented by ``test_forged_append_...``): someone
with write access who appends a well-formed new event and lets it be sealed has made a
new entry, not changed history. It extends every earlier checkpoint; an auditor finds it
among the entries after the checkpoint they hold, not as a verify failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import T0, backend_url, make_app, pg_ledger, rating, sqlite_url

from integrity import merkle
from integrity.adapters import tables as t
from integrity.app import App
from integrity.log import VerifyReport
from integrity.model import Event, Status
from integrity.venues import pseudonymise_venues


@dataclass
class Ledger:
    """A filled, checkpointed ledger and the ids the tamper tests aim at."""

    app: App
    checkpoint: str
    rating_id: int  # an accepted rating with a sealed decision
    decision_event: int
    hold_event: int  # the last (status) event of ``held_rating``
    held_rating: int
    other_rating: int


def leaf_of(app: App, event_id: int) -> int:
    with app.ledger.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(t.log_leaves.c.leaf_index).where(t.log_leaves.c.event_id == event_id)
            ).scalar_one()
        )


def fill(app: App) -> Ledger:
    pv = pseudonymise_venues(
        {"venues": [{"venue_id": "H1", "networks": ["198.51.100.7/32"]}]}, app.pseudonymiser
    )
    app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, T0, actor="test")
    decisions = [app.validate(rating()) for _ in range(10)]
    dup = rating()
    app.validate(dup)
    app.validate({**dup, "comment": "second"})  # a rejected duplicate
    held = decisions[3].rating_id
    app.ledger.append(status_hold(held, Status.HELD), 1)
    app.ledger.append(status_hold(decisions[4].rating_id, Status.VOIDED), 1)
    hold = app.ledger.append(status_hold(held, Status.HELD, "outlier.burst"), 2)
    head = app.log.checkpoint(app.clock.now())
    rid = decisions[6].rating_id
    [decision] = app.ledger.events_of(rid)
    assert hold.event_id is not None and decision.event_id is not None
    return Ledger(
        app=app,
        checkpoint=head.checkpoint(),
        rating_id=rid,
        decision_event=decision.event_id,
        hold_event=hold.event_id,
        held_rating=held,
        other_rating=decisions[8].rating_id,
    )


def status_hold(rid: int, status: Status, *reasons: str) -> Event:
    return Event(
        kind="hold" if status is Status.HELD else "void",
        actor="detector",
        at=T0 + timedelta(minutes=1),
        rating_id=rid,
        status=status,
        reasons=reasons or ("outlier.burst",),
        evidence={"score": 0.97, "threshold": 0.9},
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ledger(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ledger]:
    home = tmp_path_factory.mktemp("tamper")
    if request.param == "sqlite":
        app = make_app(home, sqlite_url(home / "ledger.db"))
        yield fill(app)
        app.close()
        return
    with pg_ledger(str(request.getfixturevalue("pg_server_url"))) as url:
        app = make_app(home, url)
        yield fill(app)
        app.close()


def verify(lg: Ledger, checkpoint: str | None = None) -> VerifyReport:
    return lg.app.log.verify(lg.app.clock.now(), checkpoint=checkpoint)


@contextmanager
def tampered(
    lg: Ledger, do: Callable[[sa.Connection], Any], undo: Callable[[sa.Connection], Any]
) -> Iterator[None]:
    before = verify(lg, lg.checkpoint)
    assert before.ok, f"the ledger was not clean before tampering: {before.problems}"
    with lg.app.ledger.engine.begin() as conn:
        do(conn)
    try:
        yield
    finally:
        with lg.app.ledger.engine.begin() as conn:
            undo(conn)
        after = verify(lg, lg.checkpoint)
        assert after.ok, f"still reported after the edit was undone: {after.problems}"


def assert_reported(report: VerifyReport, *fragments: str) -> None:
    assert not report.ok
    assert any(all(f in p for f in fragments) for p in report.problems), (
        fragments,
        report.problems,
    )


def row_of(conn: sa.Connection, table: sa.Table, **where: Any) -> dict[str, Any]:
    cond = sa.and_(*(table.c[k] == v for k, v in where.items()))
    return dict(conn.execute(sa.select(table).where(cond)).mappings().one())


def edit(table: sa.Table, key: dict[str, Any], **values: Any) -> tuple[Any, Any]:
    """``do`` and ``undo`` for an UPDATE of one row."""
    saved: dict[str, Any] = {}

    def do(conn: sa.Connection) -> None:
        row = row_of(conn, table, **key)
        saved.update({k: row[k] for k in values})
        cond = sa.and_(*(table.c[k] == v for k, v in key.items()))
        assert conn.execute(table.update().where(cond).values(**values)).rowcount == 1

    def undo(conn: sa.Connection) -> None:
        cond = sa.and_(*(table.c[k] == v for k, v in key.items()))
        conn.execute(table.update().where(cond).values(**saved))

    return do, undo


def delete(table: sa.Table, **key: Any) -> tuple[Any, Any]:
    """``do`` and ``undo`` for a DELETE of one row (put back as it was)."""
    saved: dict[str, Any] = {}

    def do(conn: sa.Connection) -> None:
        saved.update(row_of(conn, table, **key))
        cond = sa.and_(*(table.c[k] == v for k, v in key.items()))
        assert conn.execute(table.delete().where(cond)).rowcount == 1

    def undo(conn: sa.Connection) -> None:
        conn.execute(table.insert().values(**saved))

    return do, undo


# -- edits of sealed rows ----------------------------------------------------------------------


def test_clean_ledger_verifies(ledger: Ledger) -> None:
    report = verify(ledger, ledger.checkpoint)
    assert report.ok, report.problems
    assert report.strict_ok and report.warnings == []
    size, _ = merkle.parse_checkpoint(ledger.checkpoint)
    head = ledger.app.log.head()
    # the checkpoint's own ``ledger.checkpoint`` event is the leaf after it, sealed at once
    assert (report.size, report.root) == (head.size, head.root) and head.size == size + 1
    assert report.unsealed == 0


@pytest.mark.parametrize(
    ("column", "value"), [("composite", 1.0), ("window_id", "W-FORGED"), ("claims_ticket", False)]
)
def test_edited_rating_column_names_the_rating_event_and_leaf(
    ledger: Ledger, column: str, value: Any
) -> None:
    lg = ledger
    do, undo = edit(t.ratings, {"rating_id": lg.rating_id}, **{column: value})
    with tampered(lg, do, undo):
        report = verify(lg)
        leaf = leaf_of(lg.app, lg.decision_event)
        assert_reported(
            report, f"rating {lg.rating_id} ", f"event {lg.decision_event} ", f"(leaf {leaf})"
        )
        assert_reported(verify(lg, lg.checkpoint), "does not extend the given checkpoint")
        assert_reported(report, "checkpoint at size")  # the stored checkpoint breaks too


@pytest.mark.parametrize("which", ["hold", "decision"])
def test_edited_event_reasons_name_the_event_and_leaf(ledger: Ledger, which: str) -> None:
    lg = ledger
    eid = lg.hold_event if which == "hold" else lg.decision_event
    do, undo = edit(t.events, {"event_id": eid}, reasons='["nothing.to.see"]')
    with tampered(lg, do, undo):
        assert_reported(verify(lg), f"event {eid} ", f"(leaf {leaf_of(lg.app, eid)})", "differs")


def test_deleted_event_is_named(ledger: Ledger) -> None:
    lg = ledger
    leaf = leaf_of(lg.app, lg.hold_event)
    with tampered(lg, *delete(t.events, event_id=lg.hold_event)):
        report = verify(lg)
        assert_reported(report, f"event {lg.hold_event} (leaf {leaf}) was deleted")
        # and the held rating's status no longer follows from its events
        assert_reported(report, f"rating {lg.held_rating}:", "status row says held")


def test_deleted_decision_event_is_named(ledger: Ledger) -> None:
    lg = ledger
    leaf = leaf_of(lg.app, lg.decision_event)
    with tampered(lg, *delete(t.events, event_id=lg.decision_event)):
        report = verify(lg)
        assert_reported(report, f"event {lg.decision_event} (leaf {leaf}) was deleted")
        assert_reported(report, f"rating {lg.rating_id} has no decision event")


def test_deleted_rating_is_named(ledger: Ledger) -> None:
    """No foreign key keeps a rating with events from being deleted: verify names its
    sealed decision, every event left naming it and its status row."""
    lg = ledger
    with tampered(lg, *delete(t.ratings, rating_id=lg.held_rating)):
        report = verify(lg)
        assert_reported(report, f"rating {lg.held_rating} or its event")
        assert_reported(report, f"event {lg.hold_event} names rating {lg.held_rating}")
        assert_reported(report, f"a status row names rating {lg.held_rating}, which is not")


def test_deleted_leaf_is_named(ledger: Ledger) -> None:
    lg = ledger
    leaf = leaf_of(lg.app, lg.decision_event)
    with tampered(lg, *delete(t.log_leaves, leaf_index=leaf)):
        report = verify(lg)
        assert_reported(report, f"log leaf {leaf} is missing")
        assert_reported(report, "log head")


def test_deleted_last_leaf_is_noticed(ledger: Ledger) -> None:
    lg = ledger
    size = lg.app.log.head().size
    with tampered(lg, *delete(t.log_leaves, leaf_index=size - 1)):
        report = verify(lg)
        assert_reported(
            report, f"log head (size {size}) disagrees with its leaves (size {size - 1})"
        )
        given = merkle.format_checkpoint(size, lg.app.log.head().root)
        assert_reported(verify(lg, given), f"has size {size} but the log holds only")


def test_rating_inserted_without_decision_event_is_named(ledger: Ledger) -> None:
    lg = ledger
    fake_id = 900_001
    saved: dict[str, Any] = {}

    def do(conn: sa.Connection) -> None:
        row = row_of(conn, t.ratings, rating_id=lg.other_rating)
        saved.update(
            row,
            rating_id=fake_id,
            ticket_id="T-FORGED",
            fingerprint="f" * 64,
            claims_ticket=True,
            composite=1.0,
        )
        conn.execute(t.ratings.insert().values(**saved))

    def undo(conn: sa.Connection) -> None:
        conn.execute(t.ratings.delete().where(t.ratings.c.rating_id == fake_id))

    with tampered(lg, do, undo):
        report = verify(lg)
        assert_reported(report, f"rating {fake_id} has no decision event")
        assert_reported(report, "1 rating(s) have no status row")


def test_changed_rating_status_is_named(ledger: Ledger) -> None:
    lg = ledger
    do, undo = edit(t.rating_status, {"rating_id": lg.held_rating}, status="accepted")
    with tampered(lg, do, undo):
        assert_reported(
            verify(lg),
            f"rating {lg.held_rating}: status row says accepted",
            "but its events say held",
            f"(event {lg.hold_event})",
        )


def test_changed_current_reasons_are_named(ledger: Ledger) -> None:
    """The status row's reasons are materialised too (the export shows them): checked."""
    lg = ledger
    do, undo = edit(t.rating_status, {"rating_id": lg.held_rating}, reasons="cleared.by.hand")
    with tampered(lg, do, undo):
        assert_reported(
            verify(lg), f"rating {lg.held_rating}: status row says held", "cleared.by.hand"
        )


def test_edited_risk_is_named(ledger: Ledger) -> None:
    lg = ledger
    do, undo = edit(t.rating_status, {"rating_id": lg.held_rating}, risk=0.0001)
    with tampered(lg, do, undo):
        assert_reported(verify(lg), f"rating {lg.held_rating}", "risk")


def test_status_row_pointing_at_another_event_is_named(ledger: Ledger) -> None:
    lg = ledger
    do, undo = edit(t.rating_status, {"rating_id": lg.held_rating}, last_event_id=lg.decision_event)
    with tampered(lg, do, undo):
        assert_reported(verify(lg), f"rating {lg.held_rating}: status row says held")


def test_edited_log_head_is_noticed(ledger: Ledger) -> None:
    lg = ledger
    do, undo = edit(t.log_head, {"id": 1}, root=b"\x00" * 32)
    with tampered(lg, do, undo):
        assert_reported(verify(lg), "log head")


# -- appends after a checkpoint ------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    app = make_app(tmp_path / "home", backend_url(request, tmp_path))
    yield fill(app)
    app.close()


def test_old_checkpoint_holds_after_appends_and_breaks_after_an_edit(fresh: Ledger) -> None:
    lg = fresh
    old_size, old_root = merkle.parse_checkpoint(lg.checkpoint)
    for _ in range(7):
        lg.app.validate(rating())
    lg.app.clock.advance(60)  # type: ignore[attr-defined]
    new = lg.app.log.checkpoint(lg.app.clock.now())
    assert new.size == old_size + 1 + 7  # the old checkpoint's event, then the ratings
    report = verify(lg, lg.checkpoint)
    assert report.ok, report.problems
    assert verify(lg, new.checkpoint()).ok

    head = lg.app.log.head()  # the new checkpoint's event is sealed after it
    assert head.size == new.size + 1
    proof = lg.app.log.consistency_proof(old_size)
    assert merkle.verify_consistency(old_size, head.size, old_root, head.root, proof)
    assert not merkle.verify_consistency(old_size, head.size, b"\x01" * 32, head.root, proof)

    # an edit of a row sealed before the old checkpoint breaks both checkpoints
    with lg.app.ledger.engine.begin() as conn:
        conn.execute(
            t.ratings.update().where(t.ratings.c.rating_id == lg.rating_id).values(composite=5.0)
        )
    assert_reported(verify(lg, lg.checkpoint), "does not extend the given checkpoint")
    assert_reported(verify(lg, new.checkpoint()), "does not extend the given checkpoint")
    # the stored leaves are untouched, so the proof between the heads still holds: it is
    # verify's recomputation from the rows that exposes the edit
    assert merkle.verify_consistency(
        old_size, head.size, old_root, head.root, lg.app.log.consistency_proof(old_size)
    )


def test_a_rebuilt_log_is_caught_only_by_a_checkpoint_kept_outside(fresh: Ledger) -> None:
    """A forger who deletes an event and re-seals everything leaves a self-consistent log
    (they delete the ``ledger.checkpoint`` events too, which would name the checkpoints
    they wipe); the checkpoint an auditor kept is what catches it."""
    lg = fresh
    app = lg.app
    with app.ledger.engine.begin() as conn:
        conn.execute(t.events.delete().where(t.events.c.event_id == lg.hold_event))
        conn.execute(t.events.delete().where(t.events.c.kind == "ledger.checkpoint"))
        conn.execute(
            t.rating_status.update()
            .where(t.rating_status.c.rating_id == lg.held_rating)
            .values(
                last_event_id=sa.select(sa.func.max(t.events.c.event_id))
                .where(t.events.c.rating_id == lg.held_rating)
                .scalar_subquery(),
                reasons="outlier.burst",
            )
        )
        for table in (t.log_leaves, t.log_head, t.checkpoints):
            conn.execute(table.delete())
    app.log.checkpoint(app.clock.now())
    assert verify(lg).ok  # nothing inside the database gives it away ...
    size, _ = merkle.parse_checkpoint(lg.checkpoint)
    assert_reported(
        verify(lg, lg.checkpoint), f"does not extend the given checkpoint (size {size})"
    )


def test_a_checkpoint_from_another_history_is_refused(fresh: Ledger) -> None:
    size, _ = merkle.parse_checkpoint(fresh.checkpoint)
    forged = merkle.format_checkpoint(size, b"\x02" * 32)
    assert_reported(verify(fresh, forged), "does not extend the given checkpoint")
    too_big = merkle.format_checkpoint(size + 5, b"\x02" * 32)
    assert_reported(verify(fresh, too_big), f"has size {size + 5}")


def test_forged_append_is_a_new_entry_not_a_verify_failure(fresh: Ledger) -> None:
    """Documents the limit: a well-formed forged event, once sealed, extends the log."""
    lg = fresh
    old_size, old_root = merkle.parse_checkpoint(lg.checkpoint)
    # a forger with write access voids a rating and keeps the status row consistent
    with lg.app.ledger.engine.begin() as conn:
        eid = conn.execute(
            t.events.insert()
            .values(
                rating_id=lg.other_rating,
                kind="void",
                actor="nobody",
                status="voided",
                reasons='["forged"]',
                evidence="{}",
                at=T0 - timedelta(days=3),  # backdated
            )
            .returning(t.events.c.event_id)
        ).scalar_one()
        conn.execute(
            t.rating_status.update()
            .where(t.rating_status.c.rating_id == lg.other_rating)
            .values(status="voided", reasons="forged", last_event_id=eid, version=2)
        )
    before_seal = verify(lg, lg.checkpoint)
    assert before_seal.ok and before_seal.unsealed == 1 and not before_seal.strict_ok
    # unsealed: verify lists it (id, kind, actor), whatever its time
    assert any(
        f"{eid} void by nobody" in w and "not yet in the log" in w for w in before_seal.warnings
    )

    lg.app.log.seal(lg.app.clock.now())
    after = verify(lg, lg.checkpoint)
    assert after.ok, after.problems  # it extends the old checkpoint ...
    assert after.size == old_size + 2 and after.unsealed == 0  # (after the checkpoint's event)
    head = lg.app.log.head()
    proof = lg.app.log.consistency_proof(old_size)
    assert merkle.verify_consistency(old_size, head.size, old_root, head.root, proof)
    # ... and it is visible to an auditor among the entries after their checkpoint
    assert leaf_of(lg.app, eid) == old_size + 1
