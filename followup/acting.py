"""What the follow-up loop's workflows (alerts, rectification cases) share when a person
acts: who is acting, a written text's bounds, and the versioned update of the item's row
(optimistic concurrency: a second writer at the same version gets ``Conflict``).

Each workflow keeps its own transition table, roles and ledger event kinds; these are
only the mechanics that must behave the same in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from integrity.errors import Conflict, FieldError, NotFound, PermissionDenied
from integrity.people import People, Person


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
