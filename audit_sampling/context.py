"""What every audit step needs, and the words they share.

Every step is a function of an :class:`AuditContext`: the ledger (through its port
only), the Merkle log, the people registry, the clock, the ``[audit]`` settings and
the report time zone. The composition root builds one per App with
:meth:`AuditContext.from_app`; commands and the HTTP router receive it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from audit_sampling.config import AUDITOR_ROLE, SUPERVISOR_ROLE, AuditConfig
from integrity.auth import Credentials
from integrity.catalogue import Reason
from integrity.clock import Clock
from integrity.errors import ConfigError
from integrity.log import MerkleLog
from integrity.people import People, Person
from integrity.ports import Ledger

if TYPE_CHECKING:
    from integrity.app import App

#: The audit's own tables (migration ``0100_audit``).
TABLES = (
    "audit_frames",
    "audit_samples",
    "audit_strata",
    "audit_batches",
    "audit_items",
    "audit_findings",
)

# -- finding codes -------------------------------------------------------------------------

#: Every code an auditor may record, in the order they are listed to people.
CODES = (
    "genuine",
    "fabricated",
    "coerced",
    "duplicate",
    "wrong_staff",
    "cannot_verify",
    "not_applicable",
)
#: Codes that void the rating, with the reason its ``void`` event carries.
VOID_REASONS: Mapping[str, Reason] = {
    "fabricated": Reason.AUDIT_FABRICATED,
    "coerced": Reason.AUDIT_COERCED,
    "duplicate": Reason.AUDIT_DUPLICATE,
}
VOIDING = tuple(VOID_REASONS)
#: Codes that count as deviations in the estimates.
DEVIATIONS = ("fabricated", "coerced", "duplicate", "wrong_staff", "cannot_verify")
#: Out of the population: the next item in the same order replaces it.
NOT_APPLICABLE = "not_applicable"


# -- ledger subjects -----------------------------------------------------------------------


def frame_subject(frame_id: int) -> str:
    return f"audit:frame:{frame_id}"


def sample_subject(sample_id: int) -> str:
    return f"audit:sample:{sample_id}"


def batch_subject(batch_id: int) -> str:
    return f"audit:batch:{batch_id}"


def person_subject(person_id: str) -> str:
    return f"person:{person_id}"


@dataclass
class AuditContext:
    ledger: Ledger
    log: MerkleLog
    people: People
    clock: Clock
    config: AuditConfig
    timezone: ZoneInfo
    home: Path | None = None
    credentials: Credentials | None = None

    @classmethod
    def from_app(cls, app: App) -> AuditContext:
        """Wire from an opened instance (the composition root's factory)."""
        if not app.ledger.has_tables(*TABLES):
            raise ConfigError("the ledger has no audit tables; run `integrity init` to upgrade it")
        return cls(
            ledger=app.ledger,
            log=app.log,
            people=app.people,
            clock=app.clock,
            config=AuditConfig.from_section(app.core.section("audit")),
            timezone=app.core.timezone,
            home=app.settings.home,
            credentials=app.get(Credentials),
        )

    def now(self) -> datetime:
        return self.clock.now()

    def signing(self) -> Credentials:
        """The instance's credentials (tokens for auditors; bearer sign-in)."""
        if self.credentials is None:
            self.credentials = Credentials(self.people, self.clock, self.timezone)
        return self.credentials

    def supervisor(self, actor: str | None) -> Person:
        """The acting audit supervisor (role ``admin``), else ``PermissionDenied``."""
        return self.people.require(actor, SUPERVISOR_ROLE)

    def auditor(self, person_id: str | None) -> Person:
        """An active auditor (role ``auditor``), else ``PermissionDenied``."""
        return self.people.require(person_id, AUDITOR_ROLE)
