"""Intake clients on SQL: one row per client, each change with its ledger event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from integrity.adapters import tables as t
from integrity.adapters.sql import SqlLedger, SqlUnitOfWork
from integrity.catalogue import Kind
from integrity.errors import AlreadyExists, Conflict, NotFound
from integrity.model import Event, IntakeClient


def _client(row: Any) -> IntakeClient:
    return IntakeClient(
        name=row.name,
        key_id=row.key_id,
        key_hash=row.key_hash,
        halls=tuple(x for x in row.halls.split(";") if x),
        windows=tuple(x for x in row.windows.split(";") if x),
        created_at=row.created_at,
        expires_at=row.expires_at,
        rotated_at=row.rotated_at,
        revoked_at=row.revoked_at,
    )


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


class SqlClientStore:
    """Implements :class:`integrity.ports.ClientStore` on the ledger's database."""

    def __init__(self, ledger: SqlLedger) -> None:
        self.ledger = ledger

    def _locked(self, uow: SqlUnitOfWork, name: str) -> IntakeClient:
        uow.lock(f"client:{name}")
        row = uow.connection.execute(
            sa.select(t.intake_clients).where(t.intake_clients.c.name == name)
        ).first()
        if row is None:
            raise NotFound(f"no intake client {name!r} (integrity clients list)")
        return _client(row)

    def add(self, client: IntakeClient, at: datetime, actor: str) -> IntakeClient:
        with self.ledger.unit_of_work() as uow:
            uow.lock(f"client:{client.name}")
            taken = uow.connection.execute(
                sa.select(t.intake_clients.c.name).where(t.intake_clients.c.name == client.name)
            ).first()
            if taken is not None:
                raise AlreadyExists(
                    f"intake client {client.name!r} exists already (rotate its key instead)"
                )
            uow.connection.execute(
                t.intake_clients.insert(),
                {
                    "name": client.name,
                    "key_id": client.key_id,
                    "key_hash": client.key_hash,
                    "halls": ";".join(client.halls),
                    "windows": ";".join(client.windows),
                    "created_at": at,
                    "expires_at": client.expires_at,
                },
            )
            uow.append(
                Event(
                    kind=Kind.CLIENT_ADDED,
                    actor=actor,
                    at=at,
                    subject=f"client:{client.name}",
                    evidence={
                        "name": client.name,
                        "key_id": client.key_id,
                        "halls": list(client.halls),
                        "windows": list(client.windows),
                        "expires_at": _iso(client.expires_at),
                    },
                )
            )
            uow.seal_tables("intake_clients", at=at, actor=actor)
        return client

    def rotate(
        self, name: str, key_id: str, key_hash: str, at: datetime, actor: str
    ) -> IntakeClient:
        with self.ledger.unit_of_work() as uow:
            old = self._locked(uow, name)
            if old.revoked_at is not None:
                raise Conflict(f"intake client {name!r} is revoked; add a new client instead")
            uow.connection.execute(
                t.intake_clients.update()
                .where(t.intake_clients.c.name == name)
                .values(key_id=key_id, key_hash=key_hash, rotated_at=at)
            )
            uow.append(
                Event(
                    kind=Kind.CLIENT_ROTATED,
                    actor=actor,
                    at=at,
                    subject=f"client:{name}",
                    evidence={"name": name, "key_id": key_id, "previous_key_id": old.key_id},
                )
            )
            uow.seal_tables("intake_clients", at=at, actor=actor)
        return IntakeClient(
            name=old.name,
            key_id=key_id,
            key_hash=key_hash,
            halls=old.halls,
            windows=old.windows,
            created_at=old.created_at,
            expires_at=old.expires_at,
            rotated_at=at,
        )

    def revoke(self, name: str, at: datetime, actor: str) -> IntakeClient:
        with self.ledger.unit_of_work() as uow:
            old = self._locked(uow, name)
            if old.revoked_at is not None:
                raise Conflict(f"intake client {name!r} was revoked already")
            uow.connection.execute(
                t.intake_clients.update()
                .where(t.intake_clients.c.name == name)
                .values(revoked_at=at)
            )
            uow.append(
                Event(
                    kind=Kind.CLIENT_REVOKED,
                    actor=actor,
                    at=at,
                    subject=f"client:{name}",
                    evidence={"name": name, "key_id": old.key_id},
                )
            )
            uow.seal_tables("intake_clients", at=at, actor=actor)
        return IntakeClient(
            name=old.name,
            key_id=old.key_id,
            key_hash=old.key_hash,
            halls=old.halls,
            windows=old.windows,
            created_at=old.created_at,
            expires_at=old.expires_at,
            rotated_at=old.rotated_at,
            revoked_at=at,
        )

    def all(self) -> list[IntakeClient]:
        with self.ledger.reading() as conn:
            rows = conn.execute(sa.select(t.intake_clients).order_by(t.intake_clients.c.name))
            return [_client(r) for r in rows]
