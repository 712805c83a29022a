"""Reporting periods: calendar months in the rule set's time zone, and which are closed.

A rating belongs to the month of its ``served_at`` (else ``submitted_at``) in the rule
set's time zone, as in reports. Once a period is closed (a row in ``periods`` written
with its ``period.closed`` ledger event, in one unit of work: :func:`close_period`), its
reports are final: intake holds any rating that falls in it (``period.closed``, the
gate in ``rules/realtime.py``), live or replayed.

:class:`ClosedPeriods` is the read port the gate asks for every rating: it keeps the
closed periods in memory and reads them again only when a ``period.closed`` event was
written since (``reload``, which the server's background round calls).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from integrity.errors import FieldError, InvalidInput

if TYPE_CHECKING:
    from integrity.ports import Ledger, PeriodStore

_LABEL = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class ClosedPeriod:
    """A closed reporting period: its label (``YYYY-MM``), when and by whom, and the id
    of the ``period.closed`` event that closed it."""

    period: str
    closed_at: datetime
    closed_by: str
    event_id: int


def period_of(at: datetime, tz: ZoneInfo) -> str:
    """The period label (``YYYY-MM``) of an instant in time zone ``tz``."""
    local = at.astimezone(tz)
    return f"{local.year:04d}-{local.month:02d}"


def parse_period(text: str, field: str = "period") -> str:
    """A period label ``YYYY-MM`` (month 01-12), or ``InvalidInput`` naming ``field``."""
    m = _LABEL.match(text.strip()) if isinstance(text, str) else None
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise InvalidInput([FieldError(field, f"expected a month YYYY-MM, got {text!r}")], "period")
    return f"{m.group(1)}-{m.group(2)}"


def close_period(
    ledger: Ledger,
    store: PeriodStore,
    period: str,
    *,
    at: datetime,
    actor: str,
    evidence: Mapping[str, Any] | None = None,
) -> ClosedPeriod:
    """Close ``period`` (``YYYY-MM``) in one unit of work: the ``periods`` row and its
    ``period.closed`` ledger event commit together. ``AlreadyExists`` if it is closed.

    ``evidence`` goes into the event (e.g. the digest of the period's final report).
    Callers that write more in the same transaction use ``store.close(uow, ...)``.
    """
    label = parse_period(period)
    with ledger.unit_of_work() as uow:
        return store.close(uow, label, at=at, actor=actor, evidence=evidence or {})


class ClosedPeriods:
    """Which periods are closed, cached (the read port behind the ``period.closed`` gate).

    ``is_closed`` costs a set lookup (nothing at all while no period is closed);
    ``reload`` re-reads only when the newest ``period.closed`` event moved.
    """

    def __init__(self, store: PeriodStore, tz: ZoneInfo) -> None:
        self.store = store
        self.tz = tz
        self.seen = store.version()
        self._closed = self._read()

    def _read(self) -> frozenset[str]:
        return frozenset(p.period for p in self.store.closed())

    @property
    def labels(self) -> frozenset[str]:
        """The closed periods' labels."""
        return self._closed

    def is_closed(self, occurred_at: datetime) -> str | None:
        """The label of ``occurred_at``'s period if that period is closed, else ``None``."""
        if not self._closed:
            return None
        label = period_of(occurred_at, self.tz)
        return label if label in self._closed else None

    def reload(self) -> bool:
        """Re-read if a period was closed since; returns whether anything changed."""
        now = self.store.version()
        if now == self.seen:
            return False
        self._closed = self._read()
        self.seen = now
        return True
