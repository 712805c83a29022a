"""The auditors, as an audit supervisor sees and equips them.

Auditors are people with the ``auditor`` role in the core's registry; this module
only reads who they are with their batches, and issues their personal tokens through
the core's credentials (:mod:`integrity.auth`: shown once, stored as SHA-256, expiring,
revocable with ``integrity staff token revoke``; a ``credential.issued`` event with
purpose ``audit`` records who issued it to whom). Both need the acting supervisor
(role ``admin``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit_sampling.batches import list_batches
from audit_sampling.config import AUDITOR_ROLE
from audit_sampling.context import AuditContext
from integrity.auth import Issued

ROSTER_COLUMNS = ("person_id", "name", "unit", "active", "batches", "items", "findings")


@dataclass(frozen=True)
class AuditorLoad:
    """One registered auditor and the batches they hold."""

    person_id: str
    name: str
    unit: str
    active: bool
    batches: int
    items: int
    findings: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def roster(ctx: AuditContext, actor: str | None) -> list[AuditorLoad]:
    """Every registered auditor (active or not) with their batches, items and findings."""
    ctx.supervisor(actor)
    batches = list_batches(ctx)
    out = []
    for p in ctx.people.all():
        if AUDITOR_ROLE not in p.roles:
            continue
        mine = [b for b in batches if b.auditor_id == p.person_id]
        out.append(
            AuditorLoad(
                person_id=p.person_id,
                name=p.name,
                unit=p.unit,
                active=p.active,
                batches=len(mine),
                items=sum(b.items for b in mine),
                findings=sum(b.findings for b in mine),
            )
        )
    return out


def issue_token(
    ctx: AuditContext, auditor_id: str, actor: str | None, expires: str | None = None
) -> Issued:
    """A new personal token for an active auditor, issued by a supervisor (one unit of
    work with its ``credential.issued`` event); ``expires`` as ``staff token issue``."""
    person = ctx.supervisor(actor)
    ctx.auditor(auditor_id)
    return ctx.signing().issue(person.person_id, auditor_id, expires=expires, purpose="audit")
