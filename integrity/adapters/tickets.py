"""Service records on SQL: the ``service_records`` rows, and the ratings waiting for one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from integrity.adapters import tables as t
from integrity.adapters.sql import SqlLedger, _aware
from integrity.catalogue import Reason
from integrity.model import ServiceRecord, Status
from integrity.ports import UnitOfWork, WaitingRating
from integrity.sqlkit import translate_errors

_IN = 900  # ids per IN list (SQLite's bound on parameters is 999)


def _whole_code(column: Any, code: str) -> Any:
    """SQL: ``code`` is one of the ';'-joined codes of ``column`` (never a prefix of one)."""
    return sa.or_(
        column == code,
        column.startswith(code + ";", autoescape=True),
        column.endswith(";" + code, autoescape=True),
        column.contains(";" + code + ";", autoescape=True),
    )


_FIND_ONE = sa.select(t.service_records).where(
    t.service_records.c.ticket_id == sa.bindparam("ticket_id")
)


class SqlTicketStore:
    """Implements :class:`integrity.ports.TicketStore` on the ledger's database."""

    def __init__(self, ledger: SqlLedger) -> None:
        self.ledger = ledger

    @contextmanager
    def _conn(self, uow: UnitOfWork | None) -> Iterator[Connection]:
        """``uow``'s connection, else one outside any transaction (single-statement
        reads need none: on PostgreSQL that saves the BEGIN/ROLLBACK round trips)."""
        if uow is not None:
            yield uow.connection
            return
        with translate_errors(), self.ledger.reader.connect() as conn:
            yield conn

    def find(
        self, ticket_ids: Sequence[str], uow: UnitOfWork | None = None
    ) -> dict[str, ServiceRecord]:
        wanted = sorted(set(ticket_ids))
        out: dict[str, ServiceRecord] = {}
        if not wanted:
            return out
        c = t.service_records.c
        with self._conn(uow) as conn:
            for lo in range(0, len(wanted), _IN):
                part = wanted[lo : lo + _IN]
                if len(part) == 1:  # one ticket (live intake): a statement built once
                    rows = conn.execute(_FIND_ONE, {"ticket_id": part[0]}).mappings()
                else:
                    q = sa.select(t.service_records).where(c.ticket_id.in_(part))
                    rows = conn.execute(q).mappings()
                for r in rows:
                    out[r["ticket_id"]] = ServiceRecord(
                        ticket_id=r["ticket_id"],
                        window_id=r["window_id"],
                        staff_id=r["staff_id"],
                        served_at=_aware(r["served_at"]),
                        recorded_at=_aware(r["recorded_at"]),
                        client_id=r["client_id"],
                    )
        return out

    def add(self, uow: UnitOfWork, records: Sequence[ServiceRecord]) -> None:
        if not records:
            return
        uow.connection.execute(
            t.service_records.insert(),
            [
                {
                    "ticket_id": r.ticket_id,
                    "window_id": r.window_id,
                    "staff_id": r.staff_id,
                    "served_at": r.served_at,
                    "recorded_at": r.recorded_at,
                    "client_id": r.client_id or "",
                }
                for r in records
            ],
        )

    def waiting(
        self, ticket_ids: Sequence[str] | None = None, uow: UnitOfWork | None = None
    ) -> list[WaitingRating]:
        r, s, e = t.ratings.c, t.rating_status.c, t.events.c
        base = (
            sa.select(
                r.rating_id,
                r.ticket_id,
                r.window_id,
                r.staff_id,
                s.reasons,
                s.version,
                e.at,
            )
            .select_from(
                t.ratings.join(t.rating_status, s.rating_id == r.rating_id).join(
                    t.events, e.event_id == s.last_event_id
                )
            )
            .where(
                s.status == Status.HELD.value,
                _whole_code(s.reasons, Reason.UNKNOWN_TICKET.value),
            )
            .order_by(r.rating_id)
        )
        if ticket_ids is None:
            queries = [base]
        else:
            wanted = sorted(set(ticket_ids))
            queries = [
                base.where(r.ticket_id.in_(wanted[lo : lo + _IN]))
                for lo in range(0, len(wanted), _IN)
            ]
        out: list[WaitingRating] = []
        with self._conn(uow) as conn:
            for q in queries:
                for row in conn.execute(q):
                    out.append(
                        WaitingRating(
                            rating_id=int(row.rating_id),
                            ticket_id=row.ticket_id,
                            window_id=row.window_id,
                            staff_id=row.staff_id,
                            reasons=tuple(x for x in str(row.reasons).split(";") if x),
                            version=int(row.version),
                            held_at=_aware(row.at),
                        )
                    )
        out.sort(key=lambda w: w.rating_id)
        return out
