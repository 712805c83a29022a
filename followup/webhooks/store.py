"""The outbox's rows on the ledger's database (SQLAlchemy Core): the adapter behind the service.

Its own tables only (:mod:`followup.webhooks.tables`); the ledger's events are read
through :class:`~integrity.ports.Ledger`. Reads open a connection with
:meth:`Ledger.reading` unless given one; writes take the caller's unit of work's
connection, so each change commits with the ledger event that records it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from followup.webhooks import tables as wt
from followup.webhooks.model import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointState,
)
from integrity.ports import Ledger, UnitOfWork
from integrity.sqlkit import canonical_json

E, D, A = wt.webhook_endpoints, wt.webhook_deliveries, wt.webhook_attempts
L = wt.webhook_leases
OUTBOX, GAPS = wt.webhook_outbox, wt.webhook_gaps


class WebhookStore:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def schema_ready(self) -> bool:
        return self.ledger.has_tables(*wt.TABLES)

    # -- endpoints -----------------------------------------------------------------------

    def insert_endpoint(
        self, conn: Connection, url: str, events: Sequence[str], sealed: str, by: str, at: datetime
    ) -> int:
        row = {
            "url": url,
            "events": canonical_json(list(events)),
            "secret": sealed,
            "state": EndpointState.ENABLED.value,
            "since_event_id": 0,
            "created_by": by,
            "created_at": at,
            "updated_at": at,
        }
        return int(conn.execute(E.insert().returning(E.c.endpoint_id), row).scalar_one())

    def update_endpoint(self, conn: Connection, endpoint_id: int, **values: Any) -> None:
        conn.execute(E.update().where(E.c.endpoint_id == endpoint_id).values(**values))

    def endpoints(
        self,
        conn: Connection | None = None,
        ids: Sequence[int] | None = None,
        include_removed: bool = True,
        counts: bool = False,
    ) -> list[Endpoint]:
        """Endpoints by id (all when ``ids`` is None), with pending/dead counts if asked."""
        q = sa.select(E).order_by(E.c.endpoint_id)
        if ids is not None:
            q = q.where(E.c.endpoint_id.in_(list(ids)))
        if not include_removed:
            q = q.where(E.c.state != EndpointState.REMOVED.value)
        with self._conn(conn) as c:
            rows = c.execute(q).mappings().all()
            tally: dict[tuple[int, str], int] = {}
            if counts and rows:
                tq = (
                    sa.select(D.c.endpoint_id, D.c.status, sa.func.count())
                    .where(
                        D.c.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.DEAD.value])
                    )
                    .group_by(D.c.endpoint_id, D.c.status)
                )
                tally = {(int(e), str(s)): int(n) for e, s, n in c.execute(tq)}
        return [
            Endpoint(
                endpoint_id=int(r["endpoint_id"]),
                url=r["url"],
                events=tuple(json.loads(r["events"])),
                state=EndpointState(r["state"]),
                since_event_id=int(r["since_event_id"]),
                until_event_id=(
                    int(r["until_event_id"]) if r["until_event_id"] is not None else None
                ),
                created_by=r["created_by"],
                created_at=r["created_at"],
                updated_at=r["updated_at"],
                pending=tally.get((int(r["endpoint_id"]), DeliveryStatus.PENDING.value), 0),
                dead=tally.get((int(r["endpoint_id"]), DeliveryStatus.DEAD.value), 0),
            )
            for r in rows
        ]

    def sealed_secret(self, endpoint_id: int) -> str:
        with self._conn(None) as c:
            return str(
                c.execute(sa.select(E.c.secret).where(E.c.endpoint_id == endpoint_id)).scalar_one()
            )

    def due_endpoints(self, now: datetime) -> list[Endpoint]:
        """Enabled endpoints no sender holds, with a pending delivery due by ``now``."""
        due = sa.exists().where(
            D.c.endpoint_id == E.c.endpoint_id,
            D.c.status == DeliveryStatus.PENDING.value,
            D.c.next_attempt_at <= now,
        )
        q = (
            sa.select(E.c.endpoint_id)
            .select_from(E.outerjoin(L, L.c.endpoint_id == E.c.endpoint_id))
            .where(
                E.c.state == EndpointState.ENABLED.value,
                sa.or_(L.c.lease_until.is_(None), L.c.lease_until <= now),
                due,
            )
        )
        with self._conn(None) as c:
            ids = [int(i) for i in c.execute(q).scalars()]
        return self.endpoints(ids=ids) if ids else []

    def check_sealed(self, uow: UnitOfWork, refusing: str) -> None:
        """``ConfigError`` while the endpoints differ from their latest seal."""
        uow.check_sealed(*wt.CONFIG_TABLES, refusing=refusing)

    # -- the sender's lease on an endpoint (its own table: the endpoints are sealed) ---------

    def claim(self, conn: Connection, endpoint_id: int, now: datetime, until: datetime) -> bool:
        """Hold an enabled endpoint until ``until`` unless another sender holds it."""
        conn.execute(
            _insert(self.ledger.dialect, L).on_conflict_do_nothing(),
            {"endpoint_id": endpoint_id, "lease_until": None},
        )
        enabled = sa.exists().where(
            E.c.endpoint_id == endpoint_id, E.c.state == EndpointState.ENABLED.value
        )
        res = conn.execute(
            L.update()
            .where(
                L.c.endpoint_id == endpoint_id,
                sa.or_(L.c.lease_until.is_(None), L.c.lease_until <= now),
                enabled,
            )
            .values(lease_until=until)
        )
        return res.rowcount == 1

    def renew(self, conn: Connection, endpoint_id: int, held: datetime, until: datetime) -> bool:
        res = conn.execute(
            L.update()
            .where(L.c.endpoint_id == endpoint_id, L.c.lease_until == held)
            .values(lease_until=until)
        )
        return res.rowcount == 1

    def release(self, conn: Connection, endpoint_id: int, held: datetime) -> None:
        conn.execute(
            L.update()
            .where(L.c.endpoint_id == endpoint_id, L.c.lease_until == held)
            .values(lease_until=None)
        )

    # -- the outbox cursor and its gaps --------------------------------------------------

    def cursor(self, conn: Connection) -> int | None:
        value = conn.execute(sa.select(OUTBOX.c.last_event_id).where(OUTBOX.c.id == 1)).scalar()
        return None if value is None else int(value)

    def start_cursor(self, conn: Connection, value: int, at: datetime) -> None:
        conn.execute(OUTBOX.insert(), {"id": 1, "last_event_id": value, "updated_at": at})

    def move_cursor(self, conn: Connection, value: int, at: datetime) -> None:
        conn.execute(
            OUTBOX.update().where(OUTBOX.c.id == 1).values(last_event_id=value, updated_at=at)
        )

    def gaps(self, conn: Connection) -> list[tuple[int, int, datetime]]:
        q = sa.select(GAPS.c.lo, GAPS.c.hi, GAPS.c.seen_at).order_by(GAPS.c.lo)
        return [(int(lo), int(hi), at) for lo, hi, at in conn.execute(q)]

    def add_gap(self, conn: Connection, lo: int, hi: int, seen_at: datetime) -> None:
        conn.execute(GAPS.insert(), {"lo": lo, "hi": hi, "seen_at": seen_at})

    def drop_gap(self, conn: Connection, lo: int) -> None:
        conn.execute(GAPS.delete().where(GAPS.c.lo == lo))

    # -- deliveries ----------------------------------------------------------------------

    def queue(self, conn: Connection, dialect: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert deliveries; one that exists already (same endpoint and event) is skipped.
        Returns how many were inserted."""
        if not rows:
            return 0
        stmt = _insert(dialect, D).on_conflict_do_nothing().returning(D.c.delivery_id)
        return len(conn.execute(stmt, [dict(r) for r in rows]).all())

    def pending(self, endpoint_id: int, limit: int) -> list[Delivery]:
        """An endpoint's pending deliveries in event order (the first is the head)."""
        q = (
            sa.select(D)
            .where(D.c.endpoint_id == endpoint_id, D.c.status == DeliveryStatus.PENDING.value)
            .order_by(D.c.event_id, D.c.delivery_id)
            .limit(limit)
        )
        with self._conn(None) as c:
            return [_delivery(r) for r in c.execute(q).mappings()]

    def deliveries(
        self,
        conn: Connection | None = None,
        *,
        ids: Sequence[int] | None = None,
        endpoint_id: int | None = None,
        statuses: Sequence[DeliveryStatus] = (),
        limit: int | None = None,
        for_update: bool = False,
    ) -> list[Delivery]:
        """Deliveries in the order they were queued; with ``limit``, the newest ones."""
        q = sa.select(D)
        if ids is not None:
            q = q.where(D.c.delivery_id.in_(list(ids)))
        if endpoint_id is not None:
            q = q.where(D.c.endpoint_id == endpoint_id)
        if statuses:
            q = q.where(D.c.status.in_([s.value for s in statuses]))
        q = q.order_by(D.c.delivery_id.desc())
        if limit is not None:
            q = q.limit(limit)
        if for_update and self.ledger.dialect == "postgresql":
            q = q.with_for_update()
        with self._conn(conn) as c:
            return [_delivery(r) for r in c.execute(q).mappings()][::-1]

    def finish_attempt(
        self,
        conn: Connection,
        d: Delivery,
        *,
        at: datetime,
        status: DeliveryStatus,
        next_attempt_at: datetime,
        result: str,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
    ) -> bool:
        """Log one attempt and move its delivery on; ``False`` when another sender moved
        the delivery meanwhile (the attempt is logged all the same)."""
        conn.execute(
            A.insert(),
            {
                "delivery_id": d.delivery_id,
                "number": d.attempts + 1,
                "at": at,
                "status_code": status_code,
                "error": error,
                "duration_ms": duration_ms,
            },
        )
        done = status is not DeliveryStatus.PENDING
        res = conn.execute(
            D.update()
            .where(
                D.c.delivery_id == d.delivery_id,
                D.c.status == DeliveryStatus.PENDING.value,
                D.c.attempts == d.attempts,
            )
            .values(
                status=status.value,
                attempts=d.attempts + 1,
                next_attempt_at=next_attempt_at,
                last_attempt_at=at,
                last_result=result,
                finished_at=at if done else None,
            )
        )
        return res.rowcount == 1

    def cancel_pending(self, conn: Connection, endpoint_id: int, at: datetime) -> int:
        res = conn.execute(
            D.update()
            .where(D.c.endpoint_id == endpoint_id, D.c.status == DeliveryStatus.PENDING.value)
            .values(
                status=DeliveryStatus.CANCELLED.value,
                finished_at=at,
                last_result="endpoint removed",
            )
        )
        return int(res.rowcount)

    def requeue(self, conn: Connection, delivery_ids: Sequence[int], at: datetime) -> None:
        conn.execute(
            D.update()
            .where(D.c.delivery_id.in_(list(delivery_ids)), D.c.status == DeliveryStatus.DEAD.value)
            .values(
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                queued_at=at,
                next_attempt_at=at,
                finished_at=None,
            )
        )

    def attempts(
        self,
        *,
        delivery_id: int | None = None,
        endpoint_id: int | None = None,
        limit: int | None = None,
    ) -> list[Attempt]:
        """Attempts in the order they were made; with ``limit``, the newest ones."""
        q = sa.select(A).order_by(A.c.attempt_id.desc())
        if delivery_id is not None:
            q = q.where(A.c.delivery_id == delivery_id)
        if endpoint_id is not None:
            q = q.where(
                A.c.delivery_id.in_(
                    sa.select(D.c.delivery_id).where(D.c.endpoint_id == endpoint_id)
                )
            )
        if limit is not None:
            q = q.limit(limit)
        with self._conn(None) as c:
            rows = c.execute(q).mappings().all()
        return [
            Attempt(
                attempt_id=int(r["attempt_id"]),
                delivery_id=int(r["delivery_id"]),
                number=int(r["number"]),
                at=r["at"],
                status_code=r["status_code"],
                error=r["error"],
                duration_ms=float(r["duration_ms"]),
            )
            for r in rows
        ][::-1]

    # -- plumbing ------------------------------------------------------------------------

    def _conn(self, conn: Connection | None) -> Any:
        if conn is not None:
            return _Borrowed(conn)
        return self.ledger.reading()


class _Borrowed:
    """A caller's connection as a context manager that leaves it open."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        return None


def _insert(dialect: str, table: sa.Table) -> Any:
    """INSERT for ``dialect``, with its ``on_conflict_do_nothing``."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert(table)


def _delivery(r: Mapping[str, Any]) -> Delivery:
    return Delivery(
        delivery_id=int(r["delivery_id"]),
        endpoint_id=int(r["endpoint_id"]),
        event_id=int(r["event_id"]),
        kind=str(r["kind"]),
        status=DeliveryStatus(r["status"]),
        attempts=int(r["attempts"]),
        queued_at=r["queued_at"],
        next_attempt_at=r["next_attempt_at"],
        last_attempt_at=r["last_attempt_at"],
        last_result=r["last_result"],
        finished_at=r["finished_at"],
    )
