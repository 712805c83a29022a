"""Alert rows on the ledger's database (SQLAlchemy Core): the adapter behind the service.

The alerts' own tables only (:mod:`followup.alerts.tables`); the ledger is reached
through :class:`~integrity.ports.Ledger`. Reads open a connection with
:meth:`Ledger.reading` unless given one; writes take the caller's unit of work's
connection, so each change commits with the ledger event that records it. ``update``
is optimistic: it applies only at the version the caller read, else ``Conflict``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from followup.acting import update_at_version
from followup.alerts import tables as at
from followup.alerts.model import BEFORE_REPLY, Alert, Callback, Finding, State
from integrity.errors import NotFound
from integrity.ports import Ledger, UnitOfWork
from integrity.sqlkit import id_in

AL, CURSOR, GAPS = at.alerts, at.alert_cursor, at.alert_gaps
#: Every column empty: what a row inserted without them reads back as.
EMPTY_ROW: Mapping[str, Any] = dict.fromkeys(AL.c.keys())


@dataclass(frozen=True)
class Scope:
    """The alerts one person may see: those matching any of these (empty: none)."""

    windows: frozenset[str] = frozenset()  # at these windows (a head's)
    # at windows outside these (windows of no known hall; a supervisor's), when not None
    outside: frozenset[str] | None = None
    staff_id: str | None = None  # about this staff member
    escalated_to: str | None = None  # escalated to this person

    @property
    def empty(self) -> bool:
        return (
            not self.windows
            and self.outside is None
            and self.staff_id is None
            and self.escalated_to is None
        )


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts to read (every filter optional; all given ones must hold).

    ``overdue_at``: alerts still waiting for a step whose deadline passed by then.
    ``opened_from`` / ``opened_to``: a half-open UTC range of ``opened_at``.
    ``scope``: who is reading (``None``: everything).
    """

    ids: Sequence[int] | None = None
    rating_ids: Sequence[int] | None = None
    states: tuple[State, ...] = ()
    window_id: str | None = None
    overdue_at: datetime | None = None
    opened_from: datetime | None = None
    opened_to: datetime | None = None
    scope: Scope | None = None
    limit: int | None = None


class AlertStore:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def schema_ready(self) -> bool:
        return self.ledger.has_tables(*at.TABLES)

    # -- alerts ---------------------------------------------------------------------------

    def insert(self, conn: Connection, row: Mapping[str, Any]) -> int:
        return int(conn.execute(AL.insert().returning(AL.c.alert_id), dict(row)).scalar_one())

    def insert_many(self, uow: UnitOfWork, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert alerts in bulk; their ids, in the order of ``rows``."""
        return uow.insert_many(AL, rows)

    def update(
        self, conn: Connection, alert_id: int, version: int, values: Mapping[str, Any]
    ) -> None:
        """Apply ``values`` (and bump the version) if the alert is still at ``version``."""
        update_at_version(
            conn,
            AL.c.alert_id,
            alert_id,
            version,
            values,
            what="alert",
            show="integrity alerts show",
        )

    def update_many(
        self, conn: Connection, rows: Sequence[tuple[int, int, Mapping[str, Any]]]
    ) -> None:
        """:meth:`update` of many alerts in one statement: ``(alert_id, version, values)``,
        the same columns in every ``values``; each applies only at its version, and if
        one is not there any more, :meth:`update`'s ``NotFound`` or ``Conflict`` is
        raised (the unit of work then rolls all of them back)."""
        if not rows:
            return
        cols = sorted(rows[0][2])
        stmt = (
            AL.update()
            .where(AL.c.alert_id == sa.bindparam("b_id"), AL.c.version == sa.bindparam("b_at"))
            .values({**{c: sa.bindparam(f"b_{c}") for c in cols}, "version": sa.bindparam("b_to")})
        )
        params = [
            {"b_id": i, "b_at": v, "b_to": v + 1, **{f"b_{c}": values[c] for c in cols}}
            for i, v, values in rows
        ]
        if conn.execute(stmt, params).rowcount == len(rows):
            return
        done = {
            int(i): int(v)
            for i, v in conn.execute(
                sa.select(AL.c.alert_id, AL.c.version).where(
                    AL.c.alert_id.in_([i for i, _, _ in rows])
                )
            )
        }
        for alert_id, version, values in rows:  # the first one that was not applied
            if done.get(alert_id) != version + 1:
                self.update(conn, alert_id, version, values)  # raises what update raises
        raise AssertionError("rows not applied, yet every alert is at its next version")

    def get(self, alert_id: int, conn: Connection | None = None) -> Alert:
        found = self.find(AlertFilter(ids=(alert_id,)), conn)
        if not found:
            raise NotFound(f"no alert {alert_id}")
        return found[0]

    def find(self, f: AlertFilter, conn: Connection | None = None) -> list[Alert]:
        """Alerts matching the filter, oldest first."""
        q = sa.select(AL).where(*conditions(f)).order_by(AL.c.alert_id)
        if f.limit is not None:
            q = q.limit(f.limit)
        with self._conn(conn) as c:
            if f.ids is not None or f.rating_ids is not None:
                col, values = (
                    (AL.c.alert_id, f.ids) if f.ids is not None else (AL.c.rating_id, f.rating_ids)
                )
                wanted = {int(v) for v in values or ()}
                if not wanted:
                    return []
                rows = c.execute(q.where(id_in(c.dialect.name, col, wanted))).mappings()
                return sorted((alert_of(r) for r in rows), key=lambda a: a.alert_id)
            return [alert_of(r) for r in c.execute(q).mappings()]

    def claiming(self, conn: Connection, rating_ids: Sequence[int]) -> dict[int, Alert]:
        """The alert each of these ratings has that is not void (at most one each)."""
        wanted = sorted({int(r) for r in rating_ids})
        out: dict[int, Alert] = {}
        if not wanted:
            return out
        q = sa.select(AL).where(
            id_in(conn.dialect.name, AL.c.rating_id, wanted), AL.c.claims_rating.is_(True)
        )
        for r in conn.execute(q).mappings():
            a = alert_of(r)
            out[a.rating_id] = a
        return out

    def deadline_candidates(self, conn: Connection, now: datetime) -> list[Alert]:
        """Alerts before their reply with a deadline passed by ``now`` that is not marked
        yet, or marked and not yet escalated."""
        respond = sa.and_(
            AL.c.responded_at.is_(None), AL.c.respond_by <= now, AL.c.respond_overdue_at.is_(None)
        )
        reply = sa.and_(AL.c.reply_by <= now, AL.c.reply_overdue_at.is_(None))
        marked = sa.and_(
            sa.or_(AL.c.respond_overdue_at.is_not(None), AL.c.reply_overdue_at.is_not(None)),
            AL.c.escalated_at.is_(None),
        )
        q = (
            sa.select(AL)
            .where(AL.c.state.in_([s.value for s in BEFORE_REPLY]), sa.or_(respond, reply, marked))
            .order_by(AL.c.alert_id)
        )
        return [alert_of(r) for r in conn.execute(q).mappings()]

    def figures(
        self,
        column: str,
        opened_from: datetime | None,
        opened_to: datetime | None,
        now: datetime,
    ) -> list[tuple[str | None, int, int, int, int]]:
        """Per value of ``column`` (``window_id``, ``staff_id``, ``service_type``,
        ``channel``): alerts that are not void opened in the range; of them, those whose
        answer is due or given; those answered on time; those that missed a deadline
        (answered or replied late, or not yet past the deadline). Computed by the
        database (``GROUP BY``)."""
        col = AL.c[column]
        answered_on_time = sa.and_(
            AL.c.responded_at.is_not(None), AL.c.responded_at < AL.c.respond_by
        )
        decided = sa.or_(AL.c.responded_at.is_not(None), AL.c.respond_by <= now)
        late_answer = sa.or_(
            sa.and_(AL.c.responded_at.is_(None), AL.c.respond_by <= now),
            AL.c.responded_at >= AL.c.respond_by,
        )
        late_reply = sa.or_(
            sa.and_(AL.c.replied_at.is_(None), AL.c.reply_by <= now),
            AL.c.replied_at >= AL.c.reply_by,
        )

        def count(cond: Any) -> Any:
            return sa.func.sum(sa.case((cond, 1), else_=0))

        q = sa.select(
            col,
            sa.func.count(),
            count(decided),
            count(answered_on_time),
            count(sa.or_(late_answer, late_reply)),
        ).where(AL.c.state != State.VOID.value)
        if opened_from is not None:
            q = q.where(AL.c.opened_at >= opened_from)
        if opened_to is not None:
            q = q.where(AL.c.opened_at < opened_to)
        q = q.group_by(col)
        with self._conn(None) as c:
            return [
                (k, int(n), int(d or 0), int(o or 0), int(m or 0)) for k, n, d, o, m in c.execute(q)
            ]

    # -- the projection's cursor and its gaps ------------------------------------------------

    def cursor(self, conn: Connection) -> int | None:
        value = conn.execute(sa.select(CURSOR.c.last_event_id).where(CURSOR.c.id == 1)).scalar()
        return None if value is None else int(value)

    def start_cursor(self, conn: Connection, value: int, at_: datetime) -> None:
        conn.execute(CURSOR.insert(), {"id": 1, "last_event_id": value, "updated_at": at_})

    def move_cursor(self, conn: Connection, value: int, at_: datetime) -> None:
        conn.execute(
            CURSOR.update().where(CURSOR.c.id == 1).values(last_event_id=value, updated_at=at_)
        )

    def gaps(self, conn: Connection) -> list[tuple[int, int, datetime]]:
        q = sa.select(GAPS.c.lo, GAPS.c.hi, GAPS.c.seen_at).order_by(GAPS.c.lo)
        return [(int(lo), int(hi), seen) for lo, hi, seen in conn.execute(q)]

    def add_gap(self, conn: Connection, lo: int, hi: int, seen_at: datetime) -> None:
        conn.execute(GAPS.insert(), {"lo": lo, "hi": hi, "seen_at": seen_at})

    def drop_gap(self, conn: Connection, lo: int) -> None:
        conn.execute(GAPS.delete().where(GAPS.c.lo == lo))

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _conn(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
            return
        with self.ledger.reading() as c:
            yield c


def conditions(f: AlertFilter) -> list[Any]:
    """The ``WHERE`` terms of a filter (without its ids)."""
    out: list[Any] = []
    if f.states:
        out.append(AL.c.state.in_([s.value for s in f.states]))
    if f.window_id is not None:
        out.append(AL.c.window_id == f.window_id)
    if f.overdue_at is not None:
        now = f.overdue_at
        out.append(AL.c.state.in_([s.value for s in BEFORE_REPLY]))
        out.append(
            sa.or_(
                sa.and_(AL.c.responded_at.is_(None), AL.c.respond_by <= now), AL.c.reply_by <= now
            )
        )
    if f.opened_from is not None:
        out.append(AL.c.opened_at >= f.opened_from)
    if f.opened_to is not None:
        out.append(AL.c.opened_at < f.opened_to)
    if f.scope is not None:
        out.append(scope_condition(f.scope))
    return out


def scope_condition(s: Scope) -> Any:
    terms: list[Any] = []
    if s.windows:
        terms.append(AL.c.window_id.in_(sorted(s.windows)))
    if s.outside is not None:
        terms.append(AL.c.window_id.not_in(sorted(s.outside)) if s.outside else sa.true())
    if s.staff_id is not None:
        terms.append(AL.c.staff_id == s.staff_id)
    if s.escalated_to is not None:
        terms.append(AL.c.escalated_to == s.escalated_to)
    return sa.or_(*terms) if terms else sa.false()


def alert_of(r: Mapping[Any, Any]) -> Alert:
    return Alert(
        alert_id=int(r["alert_id"]),
        rating_id=int(r["rating_id"]),
        window_id=str(r["window_id"]),
        staff_id=r["staff_id"],
        service_type=str(r["service_type"]),
        channel=str(r["channel"]),
        state=State(r["state"]),
        opened_at=r["opened_at"],
        respond_by=r["respond_by"],
        reply_by=r["reply_by"],
        via=str(r["via"]),
        cause_event_id=int(r["cause_event_id"]),
        responded_at=r["responded_at"],
        responded_by=r["responded_by"],
        verified_at=r["verified_at"],
        callback=Callback(r["callback"]) if r["callback"] else None,
        finding=Finding(r["finding"]) if r["finding"] else None,
        appeal_id=int(r["appeal_id"]) if r["appeal_id"] is not None else None,
        note=r["note"],
        rectified_at=r["rectified_at"],
        action=r["action"],
        replied_at=r["replied_at"],
        reply=r["reply"],
        closed_at=r["closed_at"],
        voided_at=r["voided_at"],
        void_event_id=int(r["void_event_id"]) if r["void_event_id"] is not None else None,
        respond_overdue_at=r["respond_overdue_at"],
        reply_overdue_at=r["reply_overdue_at"],
        escalated_at=r["escalated_at"],
        escalated_to=r["escalated_to"],
        updated_at=r["updated_at"],
        version=int(r["version"]),
    )
