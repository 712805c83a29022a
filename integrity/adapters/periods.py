"""Closed reporting periods on SQL: the ``periods`` rows beside their ledger events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from integrity.adapters import tables as t
from integrity.adapters.sql import SqlLedger
from integrity.catalogue import Kind
from integrity.errors import AlreadyExists
from integrity.model import Event
from integrity.periods import ClosedPeriod
from integrity.ports import UnitOfWork


class SqlPeriodStore:
    """Implements :class:`integrity.ports.PeriodStore` on the ledger's database."""

    def __init__(self, ledger: SqlLedger) -> None:
        self.ledger = ledger

    def close(
        self,
        uow: UnitOfWork,
        period: str,
        *,
        at: datetime,
        actor: str,
        evidence: Mapping[str, Any],
    ) -> ClosedPeriod:
        """Write the ``period.closed`` event and the period's row in ``uow``."""
        conn = uow.connection
        uow.lock(f"period:{period}")
        found = conn.execute(
            sa.select(t.periods.c.closed_at, t.periods.c.closed_by).where(
                t.periods.c.period == period
            )
        ).first()
        if found is not None:
            raise AlreadyExists(
                f"period {period} is already closed (by {found.closed_by} at "
                f"{found.closed_at.isoformat()})"
            )
        ev = uow.append(
            Event(
                kind=Kind.PERIOD_CLOSED,
                actor=actor,
                at=at,
                subject=f"period:{period}",
                evidence={**evidence, "period": period},
            )
        )
        assert ev.event_id is not None
        conn.execute(
            t.periods.insert(),
            {"period": period, "closed_at": at, "closed_by": actor, "event_id": ev.event_id},
        )
        uow.seal_tables("periods", at=at, actor=actor)
        return ClosedPeriod(period, at, actor, ev.event_id)

    def closed(self) -> list[ClosedPeriod]:
        with self.ledger.reading() as conn:
            rows = conn.execute(sa.select(t.periods).order_by(t.periods.c.period)).mappings()
            return [
                ClosedPeriod(r["period"], r["closed_at"], r["closed_by"], int(r["event_id"]))
                for r in rows
            ]

    def version(self) -> int | None:
        return self.ledger.last_event_id(Kind.PERIOD_CLOSED)
