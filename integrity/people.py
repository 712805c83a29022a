"""The registry of people who act on the ledger, their roles, and changes to it.

Roles: ``staff`` (serves at windows; may appeal ratings about themselves),
``reviewer`` (decides appeals and held ratings), ``admin`` (manages the registry,
credentials and rule sets), ``auditor`` (third-party auditor: pulls sample batches,
records findings), ``head`` (heads a service window), ``supervisor`` (supervises a
service hall). A person may hold several. How a person signs in (personal tokens,
operating-system accounts) is :mod:`integrity.auth`; this module keeps the registry
rows, including which OS accounts belong to whom.

:class:`People` reads and writes the registry rows; :class:`StaffRegistry` is how
people change it: managing the registry needs the ``admin`` role, with one exception
so an instance can start: while no active admin exists, anyone may add people,
provided the change creates an admin (bootstrap). No change may leave the registry
without an active admin once it has one. Each change is a ledger event
(``staff.added``, ``staff.updated``, ``staff.imported``, ``person.os_user_mapped``)
in the same transaction as the rows it changes, and the changed configuration tables
(``people``, ``os_users``) are sealed in that transaction too (``config.sealed``), so
an edit behind the engine's back fails ``ledger verify``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from integrity.adapters import tables as t
from integrity.adapters.sql import SqlLedger
from integrity.catalogue import Kind
from integrity.clock import Clock
from integrity.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
)
from integrity.model import Event
from integrity.ports import UnitOfWork
from integrity.sqlkit import translate_errors

ROLES = ("staff", "reviewer", "admin", "auditor", "head", "supervisor")
#: What a person who is not signed in is told (every role check names it).
NOT_SIGNED_IN = (
    "nobody is signed in: set INTEGRITY_TOKEN, keep your token in "
    "~/.config/integrity/token (mode 600), or have an admin map your OS user "
    "(integrity staff map-os-user)"
)
#: An operating-system account name (POSIX portable user names, plus what LDAP adds).
_OS_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")


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


def os_user_errors(os_user: str, where: str = "os_user") -> list[FieldError]:
    if not _OS_USER.fullmatch(os_user or ""):
        return [
            FieldError(where, f"{os_user!r} is not an OS user name (1-64 of A-Z a-z 0-9 _ . @ -)")
        ]
    return []


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
        uow: UnitOfWork | None = None,
        actor: str = "system",
    ) -> Person:
        """Add a person or replace their record (credentials kept).

        In ``uow`` when given: the caller seals ``people`` (``uow.seal_tables``) after
        its last change, once; without one, in a unit of work of its own that seals
        the table with ``actor`` as the one who changed it.
        """
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
        if uow is None:
            with self.ledger.unit_of_work() as own:
                person = self.upsert(
                    person_id, roles=roles, at=at, name=name, unit=unit, windows=windows,
                    active=active, uow=own,
                )  # fmt: skip
                own.seal_tables("people", at=at, actor=actor)
            return person
        conn = uow.connection
        res = conn.execute(
            t.people.update().where(t.people.c.person_id == person_id).values(**values)
        )
        if res.rowcount == 0:
            conn.execute(t.people.insert(), {"person_id": person_id, "created_at": at, **values})
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
        return _person_of_row(row)

    def all(self) -> list[Person]:
        with translate_errors(), self.ledger.engine.connect() as conn:
            rows = conn.execute(sa.select(t.people).order_by(t.people.c.person_id)).mappings().all()
        return [_person_of_row(r) for r in rows]

    def require(self, person_id: str | None, role: str) -> Person:
        """The acting person, if registered, active and holding ``role``; else ``PermissionDenied``."""
        if not person_id:
            raise PermissionDenied(NOT_SIGNED_IN)
        try:
            person = self.get(person_id)
        except NotFound:
            raise PermissionDenied(f"{person_id!r} is not in the registry") from None
        if not person.has(role):
            raise PermissionDenied(f"{person_id!r} does not hold the {role} role")
        return person

    def map_os_user(
        self, uow: UnitOfWork, os_user: str, person_id: str, by: str, at: datetime
    ) -> bool:
        """Map an OS account to ``person_id`` in ``uow`` (replacing an earlier mapping of
        that account); ``False`` when it was already mapped to them (nothing written)."""
        conn = uow.connection
        current = conn.execute(
            sa.select(t.os_users.c.person_id).where(t.os_users.c.os_user == os_user)
        ).scalar_one_or_none()
        if current == person_id:
            return False
        if current is not None:
            conn.execute(t.os_users.delete().where(t.os_users.c.os_user == os_user))
        conn.execute(
            t.os_users.insert(),
            {"os_user": os_user, "person_id": person_id, "mapped_at": at, "mapped_by": by},
        )
        return True

    def unmap_os_user(self, uow: UnitOfWork, os_user: str) -> str | None:
        """Remove an OS account's mapping in ``uow``; the person it named, if any."""
        conn = uow.connection
        current = conn.execute(
            sa.select(t.os_users.c.person_id).where(t.os_users.c.os_user == os_user)
        ).scalar_one_or_none()
        if current is not None:
            conn.execute(t.os_users.delete().where(t.os_users.c.os_user == os_user))
        return current

    def person_of_os_user(self, os_user: str) -> str | None:
        """The person an OS account is mapped to, if any."""
        with translate_errors(), self.ledger.engine.connect() as conn:
            return conn.execute(
                sa.select(t.os_users.c.person_id).where(t.os_users.c.os_user == os_user)
            ).scalar_one_or_none()

    def os_users(self, person_id: str | None = None) -> list[dict[str, Any]]:
        """Every OS account mapping (of one person), by account name."""
        q = sa.select(t.os_users).order_by(t.os_users.c.os_user)
        if person_id is not None:
            q = q.where(t.os_users.c.person_id == person_id)
        with translate_errors(), self.ledger.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]


def _person_of_row(row: sa.RowMapping) -> Person:
    return Person(
        person_id=row["person_id"],
        name=row["name"],
        unit=row["unit"],
        roles=frozenset(filter(None, row["roles"].split(";"))),
        windows=tuple(filter(None, row["windows"].split(";"))),
        active=bool(row["active"]),
    )


STAFF_COLUMNS = ("person_id", "name", "unit", "roles", "windows", "active")
BOOTSTRAP_ACTOR = "bootstrap"
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


@dataclass(frozen=True)
class StaffRecord:
    """One person as given on the command line or in an import file."""

    person_id: str
    roles: frozenset[str]
    name: str = ""
    unit: str = ""
    windows: tuple[str, ...] = ()
    active: bool = True

    def errors(self, where: str = "") -> list[FieldError]:
        p = f"{where}." if where else ""
        out = []
        if (
            not self.person_id
            or len(self.person_id) > 64
            or self.person_id != self.person_id.strip()
        ):
            out.append(FieldError(f"{p}person_id", "1-64 characters, no surrounding spaces"))
        bad = sorted(self.roles - set(ROLES))
        if bad:
            out.append(
                FieldError(
                    f"{p}roles", f"unknown role(s) {', '.join(bad)}; roles: {', '.join(ROLES)}"
                )
            )
        if not self.roles:
            out.append(FieldError(f"{p}roles", "at least one role is required"))
        if len(self.name) > 128:
            out.append(FieldError(f"{p}name", "at most 128 characters"))
        if len(self.unit) > 64:
            out.append(FieldError(f"{p}unit", "at most 64 characters"))
        for w in self.windows:
            if not w or len(w) > 64 or ";" in w:
                out.append(
                    FieldError(f"{p}windows", f"bad window id {w!r} (1-64 characters, no ';')")
                )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "unit": self.unit,
            "roles": sorted(self.roles),
            "windows": list(self.windows),
            "active": self.active,
        }


@dataclass(frozen=True)
class ImportSummary:
    added: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]


def person_row(p: Person) -> dict[str, Any]:
    return {
        "person_id": p.person_id,
        "name": p.name,
        "unit": p.unit,
        "roles": sorted(p.roles),
        "windows": list(p.windows),
        "active": p.active,
    }


class StaffRegistry:
    """Registry changes with role checks and ledger events."""

    def __init__(self, people: People, clock: Clock) -> None:
        self.people = people
        self.ledger = people.ledger
        self.clock = clock

    def admins(self) -> set[str]:
        return {p.person_id for p in self.people.all() if p.has("admin")}

    def _authorise(self, actor: str | None, result: dict[str, Person]) -> str:
        """The id to record as actor; ``PermissionDenied`` unless admin or bootstrap."""
        before = self.admins()
        if before:
            person = self.people.require(actor, "admin")
            after = {pid for pid in before if pid not in result} | {
                pid for pid, p in result.items() if p.has("admin")
            }
            if not after:
                raise PolicyViolation("this would leave no active admin; add another admin first")
            return person.person_id
        if not any(p.has("admin") for p in result.values()):
            raise PermissionDenied(
                "the registry has no admin yet: the first change must add an active admin "
                "(--role admin); after that, managing staff needs an admin signed in"
            )
        return actor or BOOTSTRAP_ACTOR

    def add(
        self,
        actor: str | None,
        record: StaffRecord,
        *,
        update: bool = False,
        os_users: Sequence[str] = (),
    ) -> Person:
        """Add one person (or, with ``update``, replace their record), mapping the OS
        accounts ``os_users`` to them in the same unit of work."""
        errors = record.errors()
        for name in os_users:
            errors.extend(os_user_errors(name))
        if errors:
            raise InvalidInput(errors, what="person")
        exists = self._exists(record.person_id)
        if exists and not update:
            raise Conflict(f"{record.person_id} is already registered; use --update to change them")
        if not exists and update:
            raise NotFound(f"no person {record.person_id!r} to update")
        person = _person(record)
        by = self._authorise(actor, {record.person_id: person})
        now = self.clock.now()
        with self.ledger.unit_of_work() as uow:
            saved = self.people.upsert(
                record.person_id,
                roles=record.roles,
                at=now,
                name=record.name,
                unit=record.unit,
                windows=record.windows,
                active=record.active,
                uow=uow,
            )
            uow.append(
                Event(
                    kind=Kind.STAFF_UPDATED if exists else Kind.STAFF_ADDED,
                    actor=by,
                    at=now,
                    subject=f"person:{record.person_id}",
                    evidence=record.as_dict(),
                )
            )
            for name in os_users:
                if self.people.map_os_user(uow, name, record.person_id, by, now):
                    uow.append(os_user_event(name, record.person_id, by, now))
            uow.seal_tables(at=now, actor=by)
        return saved

    def import_records(self, actor: str | None, records: Sequence[StaffRecord]) -> ImportSummary:
        """Add or update many people; nothing is written unless every record is valid."""
        errors: list[FieldError] = []
        seen: set[str] = set()
        for i, rec in enumerate(records, start=1):
            errors.extend(rec.errors(f"record {i}"))
            if rec.person_id in seen:
                errors.append(FieldError(f"record {i}.person_id", f"{rec.person_id} appears twice"))
            seen.add(rec.person_id)
        if errors:
            raise InvalidInput(errors, what="staff file")
        if not records:
            return ImportSummary((), (), ())
        existing = {p.person_id: p for p in self.people.all()}
        by = self._authorise(actor, {r.person_id: _person(r) for r in records})
        now = self.clock.now()
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        with self.ledger.unit_of_work() as uow:
            for rec in records:
                old = existing.get(rec.person_id)
                new = _person(rec)
                if old is not None and old == new:
                    unchanged.append(rec.person_id)
                    continue
                self.people.upsert(
                    rec.person_id,
                    roles=rec.roles,
                    at=now,
                    name=rec.name,
                    unit=rec.unit,
                    windows=rec.windows,
                    active=rec.active,
                    uow=uow,
                )
                (updated if old is not None else added).append(rec.person_id)
            changed = set(added) | set(updated)
            uow.append(
                Event(
                    kind=Kind.STAFF_IMPORTED,
                    actor=by,
                    at=now,
                    subject="staff",
                    evidence={
                        "added": added,
                        "updated": updated,
                        "records": [r.as_dict() for r in records if r.person_id in changed],
                    },
                )
            )
            if changed:
                uow.seal_tables("people", at=now, actor=by)
        return ImportSummary(tuple(added), tuple(updated), tuple(unchanged))

    def list(
        self,
        actor: str | None,
        *,
        role: str | None = None,
        unit: str | None = None,
        window: str | None = None,
        include_inactive: bool = False,
    ) -> list[Person]:
        """People in the registry; readable by admins, reviewers and auditors (by anyone
        while no admin exists yet)."""
        if self.admins():
            require_any(self.people, actor, ("admin", "reviewer", "auditor"))
        out = []
        for p in self.people.all():
            if not include_inactive and not p.active:
                continue
            if role and role not in p.roles:
                continue
            if unit is not None and p.unit != unit:
                continue
            if window and window not in p.windows:
                continue
            out.append(p)
        return out

    def _exists(self, person_id: str) -> bool:
        try:
            self.people.get(person_id)
        except NotFound:
            return False
        return True


def os_user_event(os_user: str, person_id: str | None, by: str, at: datetime) -> Event:
    """The ledger event of mapping (``person_id``) or unmapping (``None``) an OS account."""
    return Event(
        kind=Kind.PERSON_OS_USER_MAPPED,
        actor=by,
        at=at,
        subject=f"os_user:{os_user}",
        evidence={"os_user": os_user, "person_id": person_id},
    )


def _person(r: StaffRecord) -> Person:
    return Person(r.person_id, r.name, r.unit, frozenset(r.roles), tuple(r.windows), r.active)


def require_any(people: People, actor: str | None, roles: Sequence[str]) -> Person:
    """The acting person if registered, active and holding one of ``roles`` (the role
    itself is checked through ``People.require``); else ``PermissionDenied``."""
    if not actor:
        return people.require(actor, roles[0])  # raises: say who is acting
    try:
        person = people.get(actor)
    except NotFound:
        raise PermissionDenied(f"{actor!r} is not in the registry") from None
    for role in roles:
        if person.has(role):
            return people.require(actor, role)
    if not person.active:
        raise PermissionDenied(f"{actor!r} is not active")
    if len(roles) == 1:
        raise PermissionDenied(f"{actor!r} does not hold the {roles[0]} role")
    raise PermissionDenied(f"{actor!r} holds none of the roles {', '.join(roles)}")


# -- import files ------------------------------------------------------------------------


def _split(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(v.strip() for v in str(value).replace(",", ";").split(";") if v.strip())


def _flag(value: Any, where: str, errors: list[FieldError]) -> bool:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    errors.append(FieldError(f"{where}.active", f"expected true or false, got {value!r}"))
    return True


def _record(doc: Any, where: str, errors: list[FieldError]) -> StaffRecord | None:
    if not isinstance(doc, dict):
        errors.append(FieldError(where, "expected an object"))
        return None
    unknown = sorted(set(doc) - set(STAFF_COLUMNS))
    if unknown:
        errors.append(
            FieldError(
                where, f"unknown field(s) {', '.join(unknown)}; fields: {', '.join(STAFF_COLUMNS)}"
            )
        )
    rec = StaffRecord(
        person_id=str(doc.get("person_id") or "").strip(),
        roles=frozenset(_split(doc.get("roles")) or ("staff",)),
        name=str(doc.get("name") or "").strip(),
        unit=str(doc.get("unit") or "").strip(),
        windows=_split(doc.get("windows")),
        active=_flag(doc.get("active"), where, errors),
    )
    errors.extend(rec.errors(where))
    return rec


def parse_staff_file(text: str, fmt: str) -> list[StaffRecord]:
    """Records from CSV (header: person_id,name,unit,roles,windows,active; lists
    ``;``-separated) or JSON Lines (one object per line; lists as arrays or strings).
    Missing roles default to ``staff``. ``InvalidInput`` names every bad line."""
    errors: list[FieldError] = []
    out: list[StaffRecord] = []
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "person_id" not in reader.fieldnames:
            raise InvalidInput(
                [
                    FieldError(
                        "header",
                        f"a header row with person_id is required ({','.join(STAFF_COLUMNS)})",
                    )
                ],
                what="staff file",
            )
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row:
                errors.append(FieldError(where, "more cells than header columns"))
                row.pop(None)
            rec = _record(dict(row), where, errors)
            if rec is not None:
                out.append(rec)
    elif fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"line {n}"
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as err:
                errors.append(FieldError(where, f"not valid JSON: {err.msg}"))
                continue
            rec = _record(doc, where, errors)
            if rec is not None:
                out.append(rec)
    else:
        raise InvalidInput([FieldError("format", "expected csv or jsonl")], what="staff file")
    if errors:
        raise InvalidInput(errors, what="staff file")
    return out


def guess_format(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return None


def sniff_format(text: str) -> str | None:
    """The format of a staff file from its content (standard input has no name):
    ``jsonl`` when its first non-blank line is a JSON object, ``csv`` when it is a
    header naming ``person_id``, else ``None``."""
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            return "jsonl"
        header = next(csv.reader([line]), [])
        return "csv" if "person_id" in [h.strip() for h in header] else None
    return None


def people_rows(people: Iterable[Person]) -> list[dict[str, Any]]:
    return [person_row(p) for p in people]
