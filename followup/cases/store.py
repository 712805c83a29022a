"""Case rows on the ledger's database (SQLAlchemy Core): the adapter behind the service.

The cases' own table only (:mod:`followup.cases.tables`); the ledger is reached through
:class:`~integrity.ports.Ledger`. Writes take the caller's unit of work's connection,
so each change commits with the ledger event that records it; ``update`` is
optimistic: it applies only at the version the caller read, else ``Conflict``.
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
from followup.cases import tables as ct
from followup.cases.model import ACTIVE_STATES, Case, CaseKind, State
from integrity.errors import NotFound
from integrity.ports import Ledger

CASES = ct.cases
#: Every column empty: what a row inserted without them reads back as.
EMPTY_ROW: Mapping[str, Any] = dict.fromkeys(CASES.c.keys())


@dataclass(frozen=True)
class CaseFilter:
    """Which cases to read (every filter optional; all given ones must hold)."""

    ids: Sequence[int] | None = None
    kinds: tuple[CaseKind, ...] = ()
    states: tuple[State, ...] = ()
    period: str | None = None
    before_period: str | None = None  # opened by the close of an earlier month
    subject: str | None = None


class CaseStore:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def schema_ready(self) -> bool:
        return self.ledger.has_tables(*ct.TABLES)

    def insert(self, conn: Connection, row: Mapping[str, Any]) -> int:
        return int(conn.execute(CASES.insert().returning(CASES.c.case_id), dict(row)).scalar_one())

    def update(
        self, conn: Connection, case_id: int, version: int, values: Mapping[str, Any]
    ) -> None:
        """Apply ``values`` (and bump the version) if the case is still at ``version``."""
        update_at_version(
            conn,
            CASES.c.case_id,
            case_id,
            version,
            values,
            what="case",
            show="integrity cases show",
        )

    def deadline_candidates(self, conn: Connection, now: datetime) -> list[Case]:
        """Active cases past their due date by ``now`` not marked overdue yet, or marked
        and not yet escalated, by id."""
        c = CASES.c
        due = sa.and_(c.due_at <= now, c.overdue_at.is_(None))
        marked = sa.and_(c.overdue_at.is_not(None), c.escalated_at.is_(None))
        q = (
            sa.select(CASES)
            .where(c.state.in_([s.value for s in ACTIVE_STATES]), sa.or_(due, marked))
            .order_by(c.case_id)
        )
        return [case_of(r) for r in conn.execute(q).mappings()]

    def get(self, case_id: int, conn: Connection | None = None) -> Case:
        found = self.find(CaseFilter(ids=(case_id,)), conn)
        if not found:
            raise NotFound(f"no case {case_id}")
        return found[0]

    def find(self, f: CaseFilter, conn: Connection | None = None) -> list[Case]:
        """Cases matching the filter, by id."""
        c = CASES.c
        terms: list[Any] = []
        if f.ids is not None:
            terms.append(c.case_id.in_(sorted({int(i) for i in f.ids})))
        if f.kinds:
            terms.append(c.kind.in_([k.value for k in f.kinds]))
        if f.states:
            terms.append(c.state.in_([s.value for s in f.states]))
        if f.period is not None:
            terms.append(c.period == f.period)
        if f.before_period is not None:
            terms.append(c.period < f.before_period)
        if f.subject is not None:
            terms.append(c.subject == f.subject)
        q = sa.select(CASES).where(*terms).order_by(c.case_id)
        with self._conn(conn) as cn:
            return [case_of(r) for r in cn.execute(q).mappings()]

    @contextmanager
    def _conn(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
            return
        with self.ledger.reading() as c:
            yield c


def case_of(r: Mapping[Any, Any]) -> Case:
    def opt_int(name: str) -> int | None:
        return int(r[name]) if r[name] is not None else None

    def opt_float(name: str) -> float | None:
        return float(r[name]) if r[name] is not None else None

    return Case(
        case_id=int(r["case_id"]),
        kind=CaseKind(r["kind"]),
        subject=str(r["subject"]),
        hall_id=r["hall_id"],
        period=str(r["period"]),
        counted=int(r["counted"]),
        low_scores=int(r["low_scores"]),
        low_score_rate=opt_float("low_score_rate"),
        low_rate_lo=opt_float("low_rate_lo"),
        low_rate_hi=opt_float("low_rate_hi"),
        score=opt_float("score"),
        rank=opt_int("rank"),
        mark=float(r["mark"]),
        state=State(r["state"]),
        opened_at=r["opened_at"],
        due_at=r["due_at"],
        opened_event_id=int(r["opened_event_id"]),
        carried_from=opt_int("carried_from"),
        plan=r["plan"],
        planned_at=r["planned_at"],
        planned_by=r["planned_by"],
        notes=int(r["notes"] or 0),
        last_note_at=r["last_note_at"],
        checked_period=r["checked_period"],
        checked_counted=opt_int("checked_counted"),
        checked_rate=opt_float("checked_rate"),
        checked_at=r["checked_at"],
        closed_at=r["closed_at"],
        closed_by=r["closed_by"],
        close_reason=r["close_reason"],
        overdue_at=r["overdue_at"],
        escalated_at=r["escalated_at"],
        escalated_to=r["escalated_to"],
        updated_at=r["updated_at"],
        version=int(r["version"] or 1),
    )
