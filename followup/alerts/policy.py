"""What the rule set says about low-score alerts (its ``[followup]`` table).

``[followup]`` is shared with the performance report's rectification flag
(``rectify_low_rate``, ``rectify_min_counted``) and other parts of the follow-up loop;
this reads the alerts' keys and leaves the others alone:

- ``low_dimension_at_most`` (1): a counted rating raises an alert when its composite is
  below the rubric's ``low_score_below`` (the report's low score) **or** any dimension
  is at most this (a "very dissatisfied" on one dimension is a complaint to answer even
  when the others lift the composite); 0 turns that second test off.
- ``respond_hours`` (24): the window's head acknowledges within this many clock hours.
- ``reply_working_days`` (5): the rectification and the reply to the rater are due by
  the end of this many working days after the local day the alert opened (the rule
  set's ``[calendar]`` and time zone).
- ``alert_min_text_chars`` (10): the shortest note, action or reply accepted.
- ``alert_sync_batch`` (2000): ledger events the projection reads per transaction;
  ``alert_gap_grace_s`` (600): how long an event id committed out of order on
  PostgreSQL is waited for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from integrity.calendar import WorkingCalendar
from integrity.errors import ConfigError
from integrity.model import DEFAULT_RUBRIC, Rubric

MAX_TEXT_CHARS = 2000


@dataclass(frozen=True)
class AlertPolicy:
    low_score_below: float = 3.0
    low_dimension_at_most: int = 1
    respond_hours: float = 24.0
    reply_working_days: int = 5
    min_text_chars: int = 10
    sync_batch: int = 2000
    gap_grace_s: float = 600.0
    tz: ZoneInfo = field(default=ZoneInfo("UTC"), compare=False)
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar, compare=False)

    @classmethod
    def from_section(
        cls,
        section: Mapping[str, Any],
        rubric: Rubric = DEFAULT_RUBRIC,
        calendar: WorkingCalendar | None = None,
        tz: ZoneInfo | None = None,
    ) -> AlertPolicy:
        """Read the alerts' keys of ``[followup]`` (defaults where it says nothing);
        ``ConfigError`` names a bad value."""

        def number(key: str, default: float, lo: float, hi: float, whole: bool = False) -> Any:
            value = section.get(key, default)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and whole and not float(value).is_integer():
                ok = False
            if not ok or not lo <= float(value) <= hi:
                kind = "a whole number" if whole else "a number"
                raise ConfigError(f"[followup] {key}: expected {kind} {lo:g}-{hi:g}, got {value!r}")
            return int(value) if whole else float(value)

        return cls(
            low_score_below=rubric.low_score_below,
            low_dimension_at_most=number(
                "low_dimension_at_most", cls.low_dimension_at_most, 0, rubric.scale_max, True
            ),
            respond_hours=number("respond_hours", cls.respond_hours, 1, 24 * 30),
            reply_working_days=number("reply_working_days", cls.reply_working_days, 1, 60, True),
            min_text_chars=number("alert_min_text_chars", cls.min_text_chars, 1, 500, True),
            sync_batch=number("alert_sync_batch", cls.sync_batch, 10, 100_000, True),
            gap_grace_s=number("alert_gap_grace_s", cls.gap_grace_s, 0, 7 * 86400),
            tz=tz or ZoneInfo("UTC"),
            calendar=calendar or WorkingCalendar(),
        )

    def is_low(self, composite: float, scores: Mapping[str, int]) -> bool:
        """Whether a rating raises an alert (when it counts): see the module docstring."""
        if composite < self.low_score_below:
            return True
        return self.low_dimension_at_most > 0 and any(
            v <= self.low_dimension_at_most for v in scores.values()
        )

    def respond_by(self, opened_at: datetime) -> datetime:
        """Acknowledge before this instant: ``respond_hours`` clock hours after opening."""
        return opened_at + timedelta(hours=self.respond_hours)

    def reply_by(self, opened_at: datetime) -> datetime:
        """Reply before this instant: the end of the ``reply_working_days``-th working
        day after the local day the alert opened."""
        return self.calendar.due_at(opened_at, self.tz, self.reply_working_days)
