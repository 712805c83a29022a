"""What the follow-up loop's workflows (alerts, rectification cases) share when a person
acts: who is acting, a written text's bounds, and the versioned update of the item's row
(optimistic concurrency: a second writer at the same version gets ``Conflict``); and
when a deadline passes: who runs the check, the ledger event of a step that leaves the
item in its state (marked overdue, escalated), and what one run did.

Each workflow keeps its own transition table, roles and ledger event kinds; these are
only the mechanics that must behave the same in both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from integrity.catalogue import Kind
from integrity.errors import Conflict, FieldError, NotFound, PermissionDenied
from integrity.model import Event
from integrity.people import People, Person, require_any
from integrity.ports import Ledger, UnitOfWork

T = TypeVar("T")


def acting_person(people: People, actor: str | None, role: str) -> Person:
    """The acting person: signed in, registered and active. With nobody signed in the
    error names ``role``, the role the workflow's actions usually need."""
    if not actor:
        return people.require(actor, role)  # raises: nobody is signed in
    try:
        person = people.get(actor)
    except NotFound:
        raise PermissionDenied(f"{actor!r} is not in the registry") from None
    if not person.active:
        raise PermissionDenied(f"{actor!r} is not active")
    return person


#: Who may run a workflow's ``escalate-overdue`` when signed in (nobody signed in: the
#: operator).
ESCALATE_ROLES = ("admin", "supervisor")


def deadline_actor(
    people: People,
    actor: str | None,
    *,
    system: bool,
    system_actor: str,
    operator_actor: str,
) -> str:
    """Who the ledger names for a run of the deadline check: the engine
    (``system_actor``: ``serve``'s background round), the operator (``operator_actor``:
    nobody signed in), or the person signed in, who must be an admin or a supervisor
    (else ``PermissionDenied``)."""
    if system:
        return system_actor
    if actor is None:
        return operator_actor
    return require_any(people, actor, ESCALATE_ROLES).person_id


@dataclass(frozen=True)
class EscalationRun:
    """One run of a deadline check: the items marked overdue and those escalated, one
    row each (the item's id, what was marked or to whom, the ledger event's id)."""

    overdue: tuple[dict[str, Any], ...]
    escalated: tuple[dict[str, Any], ...]


#: What a deadline run does to one due item: the rows it marked overdue and escalated.
Marked = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def run_deadlines(
    ledger: Ledger,
    lock: str,
    candidates: Callable[[Connection], Sequence[T]],
    handle: Callable[[UnitOfWork, T], Marked],
) -> EscalationRun:
    """One deadline run over the items ``candidates`` finds due: when there are some,
    each handled in one unit of work under ``lock``; none due: a read, no lock taken
    (on SQLite the lock is the database's write lock, and ``serve`` runs this every
    round)."""
    with ledger.reading() as conn:
        if not candidates(conn):
            return EscalationRun((), ())
    overdue: list[dict[str, Any]] = []
    escalated: list[dict[str, Any]] = []
    with ledger.unit_of_work() as uow:
        uow.lock(lock)
        for item in candidates(uow.connection):
            o, e = handle(uow, item)
            overdue += o
            escalated += e
    return EscalationRun(tuple(overdue), tuple(escalated))


def in_place_event(
    *,
    kind: Kind,
    actor: str,
    at: datetime,
    id_key: str,
    item_id: int,
    state: str,
    version: int,
    rule_set_id: str | None,
    subject: str,
    extra: Mapping[str, Any],
    rating_id: int | None = None,
) -> Event:
    """The ledger event of a step that leaves the item in ``state`` (a deadline marked,
    an escalation): the evidence skeleton of every transition (``id_key``, ``from`` and
    ``to`` both ``state``, the item's new ``version``) and ``extra``."""
    return Event(
        kind=kind,
        actor=actor,
        at=at,
        rating_id=rating_id,
        rule_set_id=rule_set_id,
        subject=subject,
        evidence={id_key: item_id, "from": state, "to": state, "version": version, **extra},
    )


def text_field(field: str, value: str | None, lo: int, hi: int) -> tuple[str, list[FieldError]]:
    """``value`` stripped, and a field error unless it has ``lo``-``hi`` characters."""
    text = (value or "").strip()
    if len(text) < lo or len(text) > hi:
        return text, [FieldError(field, f"write {lo}-{hi} characters")]
    return text, []


def update_at_version(
    conn: Connection,
    key: sa.Column[Any],
    item_id: int,
    version: int,
    values: Mapping[str, Any],
    *,
    what: str,
    show: str,
) -> None:
    """Apply ``values`` to the row ``key == item_id`` (and bump its ``version``) if it is
    still at ``version``: ``NotFound`` if there is no such row, ``Conflict`` naming
    ``what`` and the command that shows it (``show``) if someone changed it meanwhile."""
    table = key.table
    assert isinstance(table, sa.Table)
    res = conn.execute(
        table.update()
        .where(key == item_id, table.c.version == version)
        .values(**values, version=version + 1)
    )
    if res.rowcount == 1:
        return
    found = conn.execute(sa.select(table.c.version).where(key == item_id)).first()
    if found is None:
        raise NotFound(f"no {what} {item_id}")
    raise Conflict(
        f"{what} {item_id} changed meanwhile (version {found.version}, expected "
        f"{version}); look at it again ({show} {item_id})"
    )


def record_transition(
    uow: UnitOfWork,
    update: Callable[[Connection, int, int, Mapping[str, Any]], None],
    *,
    id_key: str,
    item_id: int,
    version: int,
    before: str,
    after: str,
    now: datetime,
    kind: Kind,
    actor: str,
    rule_set_id: str | None,
    subject: str,
    values: Mapping[str, Any],
    extra: Mapping[str, Any],
    rating_id: int | None = None,
) -> None:
    """In ``uow``: the item's row moved from state ``before`` to ``after`` at ``version``
    (``update``, the store's versioned update) and its ledger event, whose evidence names
    the item (``id_key``), both states, the new version and ``extra``."""
    update(uow.connection, item_id, version, {"state": after, "updated_at": now, **values})
    uow.append(
        Event(
            kind=kind,
            actor=actor,
            at=now,
            rating_id=rating_id,
            rule_set_id=rule_set_id,
            subject=subject,
            evidence={
                id_key: item_id,
                "from": before,
                "to": after,
                "version": version + 1,
                **extra,
            },
        )
    )
