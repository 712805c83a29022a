"""Who may read what: the one read policy, applied when a person reads through the server.

Writes are guarded by the services (each checks the acting person's role). Reads that
need no person in direct-database mode (reports, the ratings export, the audit's
listings) are the operator's there and show everything: whoever holds the database
credentials can read the tables anyway. Through the server (``integrity --server URL``
or ``POST /v1/commands``) the reader is the person the bearer token names, and this
table decides:

=====================  =====================================================  ==========================
what                   roles that may read it                                 where
=====================  =====================================================  ==========================
``ratings``            admin, reviewer, auditor, supervisor                   ``export ratings``
``comments``           admin, reviewer, supervisor                            the ``comment`` column
``performance``        every role                                             ``report --by window|service_type``
``staff_performance``  admin, reviewer, auditor, supervisor, head             ``report --by staff`` (names staff)
``audit``              admin, auditor                                         ``audit report|show|pulls``, batch lists
``report_pages``       admin, supervisor                                      ``report page|book``, ``GET /v1/reports/page``
=====================  =====================================================  ==========================

Readers without ``comments`` get the export without its ``comment`` column (not an
empty one). The audit's batch list shows an auditor only their own batches. The
supervisor's pages (``report_pages``) name staff only for readers who may also read
``staff_performance``.
"""

from __future__ import annotations

from collections.abc import Mapping

from integrity.errors import PermissionDenied
from integrity.people import ROLES, Person

READ_POLICY: Mapping[str, frozenset[str]] = {
    "ratings": frozenset({"admin", "reviewer", "auditor", "supervisor"}),
    "comments": frozenset({"admin", "reviewer", "supervisor"}),
    "performance": frozenset(ROLES),
    "staff_performance": frozenset({"admin", "reviewer", "auditor", "supervisor", "head"}),
    "audit": frozenset({"admin", "auditor"}),
    "report_pages": frozenset({"admin", "supervisor"}),
}


def may_read(reader: Person | None, what: str) -> bool:
    """Whether ``reader`` may read ``what``; ``None`` is the operator (direct mode): always."""
    roles = READ_POLICY[what]
    return reader is None or any(reader.has(r) for r in roles)


def require_read(reader: Person | None, what: str) -> None:
    """:class:`PermissionDenied` unless ``reader`` may read ``what``."""
    if not may_read(reader, what):
        assert reader is not None
        need = ", ".join(sorted(READ_POLICY[what]))
        raise PermissionDenied(
            f"{reader.person_id!r} may not read {what.replace('_', ' ')} (roles: {need})"
        )
