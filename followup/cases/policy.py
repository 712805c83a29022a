"""What the rule set says about the month's close and its cases (its ``[followup]`` table).

Shared with the performance report's rectification flag and the alerts; this reads:

- ``rectify_low_rate`` (0.20) and ``rectify_min_counted`` (10): a window or staff
  member whose low-score rate among the month's counted ratings is above the mark,
  with at least that many counted, gets a case (the report's ``rectify`` flag: the
  same rule, :class:`~integrity.reports.RectifyRule`). The next close checks it: at or
  below the mark with at least ``rectify_min_counted`` counted is resolved, above is
  unresolved; fewer counted ratings cannot decide, and the case waits for the close
  after.
- ``case_working_days`` (20): a case is due by the end of this many working days
  (``[calendar]``) after the local day of the close that opened it.
- ``talk_bottom_ranks`` (3; 0 turns talks off): a window whose score is among the
  lowest this many of the windows with at least ``rectify_min_counted`` counted, in
  this close and in the close of the month before, gets a ``talk`` case. With no more
  eligible windows than this, no window is in the bottom ranks.
- ``case_min_text_chars`` (10): the shortest plan, note or reason accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from integrity.calendar import WorkingCalendar
from integrity.errors import ConfigError
from integrity.reports import RectifyRule

MAX_TEXT_CHARS = 4000


@dataclass(frozen=True)
class CasePolicy:
    rectify: RectifyRule = field(default_factory=RectifyRule)
    case_working_days: int = 20
    talk_bottom_ranks: int = 3
    min_text_chars: int = 10
    tz: ZoneInfo = field(default=ZoneInfo("UTC"), compare=False)
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar, compare=False)

    @classmethod
    def from_section(
        cls,
        section: Mapping[str, Any],
        calendar: WorkingCalendar | None = None,
        tz: ZoneInfo | None = None,
    ) -> CasePolicy:
        """Read the keys above (defaults where ``[followup]`` says nothing); ``ConfigError``
        names a bad value."""

        def whole(key: str, default: int, lo: int, hi: int) -> int:
            value = section.get(key, default)
            ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
            if not ok:
                raise ConfigError(
                    f"[followup] {key}: expected a whole number {lo}-{hi}, got {value!r}"
                )
            return int(value)

        return cls(
            rectify=RectifyRule.from_section(section),
            case_working_days=whole("case_working_days", cls.case_working_days, 1, 250),
            talk_bottom_ranks=whole("talk_bottom_ranks", cls.talk_bottom_ranks, 0, 1000),
            min_text_chars=whole("case_min_text_chars", cls.min_text_chars, 1, 500),
            tz=tz or ZoneInfo("UTC"),
            calendar=calendar or WorkingCalendar(),
        )

    @property
    def mark(self) -> float:
        return self.rectify.low_rate

    @property
    def min_counted(self) -> int:
        return self.rectify.min_counted

    def opens(self, counted: int, low_rate: float | None) -> bool:
        """Whether a subject's month opens a case: above the mark, enough counted."""
        return self.rectify.applies(counted, low_rate)

    def check(self, counted: int, low_rate: float | None) -> str:
        """The next close's verdict on a case from its subject's figures in that month:
        ``too_few`` (fewer than ``min_counted`` counted), ``unresolved`` (above the mark)
        or ``resolved``."""
        if counted < self.min_counted or low_rate is None:
            return "too_few"
        return "unresolved" if low_rate > self.mark else "resolved"

    def due_at(self, opened_at: datetime) -> datetime:
        """Due before this instant: the end of the ``case_working_days``-th working day
        after the local day the case opened."""
        return self.calendar.due_at(opened_at, self.tz, self.case_working_days)


def bottom_windows(scores: Mapping[str, float], ranks: int) -> frozenset[str]:
    """The windows among the lowest ``ranks`` by score (``scores``: the eligible ones):
    those with fewer than ``ranks`` windows scoring strictly lower (ties all in). None
    when ``ranks`` is 0 or no more windows than ``ranks`` are eligible."""
    if ranks <= 0 or len(scores) <= ranks:
        return frozenset()
    values = sorted(scores.values())
    out = set()
    for window, score in scores.items():
        lower = sum(1 for v in values if v < score - 1e-9)
        if lower < ranks:
            out.add(window)
    return frozenset(out)
