"""Report periods: a month, a quarter, an ISO week or a range of days, in a time zone.

A period is a half-open UTC interval ``[start, end)`` between two local midnights of
the rule set's time zone; a rating belongs to the period of its ``occurred_at``
(``served_at``, else ``submitted_at``). Each period knows the one before it, of the
same kind (the month, quarter or ISO week before; for a range, as many days ending
the day before it starts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from integrity.errors import FieldError, InvalidInput

PERIOD_FORMS = "YYYY-MM (month), YYYY-Qn (quarter) or YYYY-Www (ISO week)"


def _bad(name: str, message: str) -> InvalidInput:
    return InvalidInput([FieldError(name, message)], what="period")


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    """Local midnight starting ``day`` in ``tz``, as UTC."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _add_months(day: date, months: int) -> date:
    """The first of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    """Local days ``first_day`` .. ``last_day`` (both included) in ``tz``, as the UTC
    interval ``[start, end)``. ``kind``: ``month``, ``quarter``, ``week`` or ``range``."""

    label: str
    start: datetime
    end: datetime
    kind: str = "month"
    first_day: date | None = None
    last_day: date | None = None
    tz: ZoneInfo = field(default=ZoneInfo("UTC"), compare=False)

    @classmethod
    def of_days(cls, kind: str, label: str, first: date, last: date, tz: ZoneInfo) -> Period:
        return cls(
            label,
            _midnight(first, tz),
            _midnight(last + timedelta(days=1), tz),
            kind,
            first,
            last,
            tz,
        )

    @classmethod
    def parse(cls, text: str, tz: ZoneInfo) -> Period:
        """``2026-10`` (month), ``2026-Q4`` (quarter) or ``2026-W43`` (ISO week)."""
        t = text.strip()
        if re.fullmatch(r"\d{4}-[Qq]\d", t):
            return cls.quarter(t, tz)
        if re.fullmatch(r"\d{4}-[Ww]\d{2}", t):
            return cls.week(t, tz)
        if re.fullmatch(r"\d{4}-\d{2}", t):
            return cls.month(t, tz)
        raise _bad("period", f"expected {PERIOD_FORMS}, got {text!r}")

    @classmethod
    def month(cls, text: str, tz: ZoneInfo) -> Period:
        m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise _bad("period", f"expected YYYY-MM, got {text!r}")
        first = date(int(m.group(1)), int(m.group(2)), 1)
        return cls.of_days("month", text.strip(), first, _add_months(first, 1) - timedelta(1), tz)

    @classmethod
    def quarter(cls, text: str, tz: ZoneInfo) -> Period:
        m = re.fullmatch(r"(\d{4})-[Qq]([1-4])", text.strip())
        if not m:
            raise _bad("period", f"expected YYYY-Qn (n = 1-4), got {text!r}")
        year, q = int(m.group(1)), int(m.group(2))
        first = date(year, 3 * q - 2, 1)
        last = _add_months(first, 3) - timedelta(1)
        return cls.of_days("quarter", f"{year}-Q{q}", first, last, tz)

    @classmethod
    def week(cls, text: str, tz: ZoneInfo) -> Period:
        m = re.fullmatch(r"(\d{4})-[Ww](\d{2})", text.strip())
        try:
            if not m:
                raise ValueError
            first = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
        except ValueError:
            raise _bad(
                "period", f"expected YYYY-Www, an ISO week that exists, got {text!r}"
            ) from None
        year, week, _ = first.isocalendar()
        return cls.of_days("week", f"{year}-W{week:02d}", first, first + timedelta(6), tz)

    @classmethod
    def between(cls, first: date | str, last: date | str, tz: ZoneInfo) -> Period:
        """The local days ``first`` .. ``last``, both included (``--from`` / ``--to``)."""
        a = _day(first, "from")
        b = _day(last, "to")
        if b < a:
            raise _bad("to", f"{b.isoformat()} is before --from {a.isoformat()}")
        return cls.of_days("range", f"{a.isoformat()}..{b.isoformat()}", a, b, tz)

    @property
    def days(self) -> int:
        """Local calendar days in the period."""
        if self.first_day is None or self.last_day is None:
            return round((self.end - self.start).total_seconds() / 86400)
        return (self.last_day - self.first_day).days + 1

    def previous(self) -> Period:
        """The period before, of the same kind (same length for a range of days)."""
        first = self.first_day or self.start.astimezone(self.tz).date()
        if self.kind == "month":
            return Period.month(_add_months(first, -1).strftime("%Y-%m"), self.tz)
        if self.kind == "quarter":
            p = _add_months(first, -3)
            return Period.quarter(f"{p.year}-Q{(p.month - 1) // 3 + 1}", self.tz)
        if self.kind == "week":
            year, week, _ = (first - timedelta(7)).isocalendar()
            return Period.week(f"{year}-W{week:02d}", self.tz)
        last = first - timedelta(1)
        return Period.between(last - timedelta(self.days - 1), last, self.tz)

    def describe(self) -> str:
        """``2026-10 (2026-10-01 00:00 +08:00 to 2026-11-01 00:00 +08:00)``: for people."""
        return (
            f"{self.label} ({local_time(self.start, self.tz)} to {local_time(self.end, self.tz)})"
        )


def local_time(at: datetime, tz: ZoneInfo) -> str:
    """A time for people: in ``tz``, with its offset (``2026-10-15 10:00:00 +08:00``)."""
    local = at.astimezone(tz)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"


def _day(value: date | str, name: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise _bad(name, f"expected a date YYYY-MM-DD, got {value!r}") from None
