"""The service registry on SQL: replaced whole in one unit of work, read whole."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from integrity.adapters import tables as t
from integrity.adapters.sql import SqlLedger
from integrity.catalogue import Kind
from integrity.model import Event
from integrity.registry import Hall, RosterEntry, ServiceRegistry, Window


class SqlRegistryStore:
    """Implements :class:`integrity.ports.RegistryStore` on the ledger's database."""

    def __init__(self, ledger: SqlLedger) -> None:
        self.ledger = ledger

    def replace(self, reg: ServiceRegistry, at: datetime, actor: str) -> int:
        """Replace the registry; returns the id of its ``registry.loaded`` event. Its
        tables are sealed in the same unit of work (``config.sealed`` events)."""
        with self.ledger.unit_of_work() as uow:
            conn = uow.connection
            conn.execute(t.roster.delete())
            conn.execute(t.windows.delete())
            conn.execute(t.halls.delete())
            if reg.halls:
                conn.execute(
                    t.halls.insert(),
                    [
                        {"hall_id": h.hall_id, "name": h.name, "supervisor": h.supervisor}
                        for h in reg.halls.values()
                    ],
                )
            if reg.windows:
                conn.execute(
                    t.windows.insert(),
                    [
                        {
                            "window_id": w.window_id,
                            "hall_id": w.hall_id,
                            "name": w.name,
                            "head": w.head,
                            "service_types": ";".join(w.service_types),
                        }
                        for w in reg.windows.values()
                    ],
                )
            if reg.roster:
                conn.execute(
                    t.roster.insert(),
                    [
                        {
                            "staff_id": e.staff_id,
                            "window_id": e.window_id,
                            "start_date": e.start,
                            "end_date": e.end,
                        }
                        for e in reg.roster
                    ],
                )
            ev = uow.append(
                Event(
                    kind=Kind.REGISTRY_LOADED,
                    actor=actor,
                    at=at,
                    subject="registry",
                    evidence={
                        "halls": len(reg.halls),
                        "windows": len(reg.windows),
                        "roster": len(reg.roster),
                    },
                )
            )
            uow.seal_tables("halls", "windows", "roster", at=at, actor=actor)
        return int(ev.event_id or 0)

    def version(self) -> int | None:
        return self.ledger.last_event_id(Kind.REGISTRY_LOADED)

    def load(self) -> ServiceRegistry:
        version = self.version()
        if version is None:
            return ServiceRegistry()
        with self.ledger.reading() as conn:
            halls = {
                r.hall_id: Hall(r.hall_id, r.name, r.supervisor)
                for r in conn.execute(sa.select(t.halls))
            }
            windows = {
                r.window_id: Window(
                    r.window_id,
                    r.hall_id,
                    r.name,
                    r.head,
                    tuple(x for x in r.service_types.split(";") if x),
                )
                for r in conn.execute(sa.select(t.windows))
            }
            roster = tuple(
                RosterEntry(r.staff_id, r.window_id, r.start_date, r.end_date)
                for r in conn.execute(sa.select(t.roster).order_by(t.roster.c.entry_id))
            )
        return ServiceRegistry(halls, windows, roster, version)
