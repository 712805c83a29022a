"""Working days: the one calendar every deadline is counted in (review, appeals, follow-ups).

A working day is Monday to Friday in the rule set's time zone, minus ``holidays``,
plus ``working_weekends`` (make-up days: a Saturday or Sunday worked in exchange for a
holiday bridge). The rule set's ``[calendar]`` table gives both lists
(:meth:`WorkingCalendar.from_section`); :class:`~integrity.config.CoreConfig` parses it
once. Deadlines are instants: the end of the N-th working day after the local day
something started, so "overdue" is judged the same in every time zone.

Pure functions over dates; no clock, no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from integrity.errors import ConfigError

KEYS = ("holidays", "working_weekends")


@dataclass(frozen=True)
class WorkingCalendar:
    """Mon-Fri minus ``holidays`` plus ``working_weekends`` (dates in the local calendar)."""

    holidays: frozenset[date] = frozenset()
    working_weekends: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        both = sorted(self.holidays & self.working_weekends)
        if both:
            raise ConfigError(
                f"a date is both a holiday and a working weekend: {both[0].isoformat()}"
            )

    @classmethod
    def from_section(cls, section: Mapping[str, Any], where: str = "[calendar]") -> WorkingCalendar:
        """Read ``holidays`` and ``working_weekends`` (lists of ``YYYY-MM-DD``); other keys
        and bad values are a :class:`ConfigError` naming the key."""
        unknown = sorted(set(section) - set(KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}"
            )
        return cls(
            holidays=parse_dates(section.get("holidays", []), f"{where}.holidays"),
            working_weekends=parse_dates(
                section.get("working_weekends", []), f"{where}.working_weekends"
            ),
        )

    def merged(
        self, holidays: Iterable[date] = (), working_weekends: Iterable[date] = ()
    ) -> WorkingCalendar:
        """This calendar with more holidays and make-up days (``ConfigError`` on a clash)."""
        return WorkingCalendar(
            self.holidays | frozenset(holidays), self.working_weekends | frozenset(working_weekends)
        )

    def is_working_day(self, d: date) -> bool:
        if d in self.holidays:
            return False
        return d.weekday() < 5 or d in self.working_weekends

    def add_working_days(self, start: date, n: int) -> date:
        """The ``n``-th working day after ``start`` (``start`` itself not counted)."""
        d = start
        left = n
        while left > 0:
            d += timedelta(days=1)
            if self.is_working_day(d):
                left -= 1
        return d

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in ``(start, end]``; 0 when ``end <= start``."""
        n, d = 0, start
        while d < end:
            d += timedelta(days=1)
            n += self.is_working_day(d)
        return n

    def due_at(self, started_at: datetime, tz: ZoneInfo, working_days: int) -> datetime:
        """When something started at ``started_at`` is due: the end of the
        ``working_days``-th working day after its local day in ``tz`` (UTC, exclusive:
        overdue from this instant on)."""
        local_day = started_at.astimezone(tz).date()
        due_day = self.add_working_days(local_day, working_days)
        return datetime.combine(due_day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)


def parse_dates(raw: Any, where: str) -> frozenset[date]:
    """A TOML list of dates (TOML dates or ``YYYY-MM-DD`` strings); ``ConfigError`` otherwise."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of dates (YYYY-MM-DD)")
    out = set()
    for item in raw:
        if isinstance(item, date) and not isinstance(item, datetime):
            out.add(item)
            continue
        try:
            out.add(date.fromisoformat(str(item)))
        except ValueError:
            raise ConfigError(f"{where}: {item!r} is not a date (YYYY-MM-DD)") from None
    return frozenset(out)


def due_day(due_at: datetime | None, tz: ZoneInfo) -> str | None:
    """The last local day (``YYYY-MM-DD``) on which something due at ``due_at`` is on time."""
    if due_at is None:
        return None
    return (due_at.astimezone(tz) - timedelta(microseconds=1)).date().isoformat()
