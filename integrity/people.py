"""The registry of people who act on the ledger, and their roles.

Roles: ``staff`` (serves at windows; may appeal ratings about themselves),
``reviewer`` (decides appeals and held ratings), ``admin`` (manages the registry and
rule sets), ``auditor`` (third-party auditor: pulls sample batches, records
findings). A person may hold several. API tokens are stored as SHA-256 only.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from integrity.adapters import tables as t
from integrity.adapters.sql import SqlLedger, translate_errors
from integrity.errors import FieldError, InvalidInput, NotFound, PermissionDenied

ROLES = ("staff", "reviewer", "admin", "auditor")


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    unit: str
    roles: frozenset[str]
    windows: tuple[str, ...]
    active: bool = True

    def has(self, role: str) -> bool:
        return self.active and role in self.roles


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _validate(person_id: str, roles: Iterable[str]) -> list[FieldError]:
    errors = []
    if not person_id or len(person_id) > 64:
        errors.append(FieldError("person_id", "a string of 1-64 characters is required"))
    bad = sorted(set(roles) - set(ROLES))
    if bad:
        errors.append(
            FieldError("roles", f"unknown role(s) {', '.join(bad)}; expected {', '.join(ROLES)}")
        )
    if not set(roles):
        errors.append(FieldError("roles", "at least one role is required"))
    return errors


class People:
    """Registry operations on the ledger's database."""

    def __init__(self, ledger: SqlLedger) -> None:
        self.ledger = ledger

    def upsert(
        self,
        person_id: str,
        *,
        roles: Iterable[str],
        at: datetime,
        name: str = "",
        unit: str = "",
        windows: Sequence[str] = (),
        active: bool = True,
    ) -> Person:
        """Add a person or replace their record (token kept)."""
        roles = frozenset(roles)
        errors = _validate(person_id, roles)
        if errors:
            raise InvalidInput(errors, what="person")
        values = {
            "name": name,
            "unit": unit,
            "roles": ";".join(sorted(roles)),
            "windows": ";".join(windows),
            "active": active,
        }
        with translate_errors(), self.ledger.engine.begin() as conn:
            res = conn.execute(
                t.people.update().where(t.people.c.person_id == person_id).values(**values)
            )
            if res.rowcount == 0:
                conn.execute(
                    t.people.insert(), {"person_id": person_id, "created_at": at, **values}
                )
        return Person(person_id, name, unit, roles, tuple(windows), active)

    def get(self, person_id: str) -> Person:
        with translate_errors(), self.ledger.engine.connect() as conn:
            row = (
                conn.execute(sa.select(t.people).where(t.people.c.person_id == person_id))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no person {person_id!r} in the registry")
        return _person(row)

    def all(self) -> list[Person]:
        with translate_errors(), self.ledger.engine.connect() as conn:
            rows = conn.execute(sa.select(t.people).order_by(t.people.c.person_id)).mappings().all()
        return [_person(r) for r in rows]

    def require(self, person_id: str | None, role: str) -> Person:
        """The acting person, if registered, active and holding ``role``; else ``PermissionDenied``."""
        if not person_id:
            raise PermissionDenied("say who is acting: --as PERSON_ID or INTEGRITY_ACTOR")
        try:
            person = self.get(person_id)
        except NotFound:
            raise PermissionDenied(f"{person_id!r} is not in the registry") from None
        if not person.has(role):
            raise PermissionDenied(f"{person_id!r} does not hold the {role} role")
        return person

    def issue_token(self, person_id: str) -> str:
        """A new API token for a person (shown once; only its hash is stored)."""
        self.get(person_id)
        token = secrets.token_urlsafe(32)
        with translate_errors(), self.ledger.engine.begin() as conn:
            conn.execute(
                t.people.update()
                .where(t.people.c.person_id == person_id)
                .values(token_hash=token_hash(token))
            )
        return token

    def by_token(self, token: str) -> Person:
        with translate_errors(), self.ledger.engine.connect() as conn:
            row = (
                conn.execute(sa.select(t.people).where(t.people.c.token_hash == token_hash(token)))
                .mappings()
                .first()
            )
        if row is None or not row["active"]:
            raise PermissionDenied("unknown or revoked token")
        return _person(row)


def _person(row: sa.RowMapping) -> Person:
    return Person(
        person_id=row["person_id"],
        name=row["name"],
        unit=row["unit"],
        roles=frozenset(filter(None, row["roles"].split(";"))),
        windows=tuple(filter(None, row["windows"].split(";"))),
        active=bool(row["active"]),
    )
