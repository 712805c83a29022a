"""Appeal policy: the ``[appeals]`` knobs of the rule set and the pure rules that use them.

Who may appeal which rating (eligibility), when a decision is due (working days in
the rule set's time zone, counted by the core's :class:`~integrity.calendar.WorkingCalendar`),
who may review (separation of duties), and when an uphold
is complete. Pure functions over plain values: unit-tested without a database.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from integrity.calendar import WorkingCalendar, parse_dates
from integrity.catalogue import Reason
from integrity.errors import ConfigError, FieldError, InvalidInput
from integrity.model import Rubric, Status

# The closed list of grounds. Disagreeing with the score is not one.
GROUNDS: Mapping[str, str] = {
    "abusive_or_unrelated": "abusive, or unrelated to the service given",
    "wrong_staff_or_window": "names the wrong staff member or window",
    "duplicate_or_fabricated": "a duplicate or fabricated rating",
    "system_error": "a system error (wrong ticket, time, scores or attribution)",
}
# Accepted on filing so the attempt is on record, but never admitted.
NOT_GROUNDS: Mapping[str, str] = {
    "disagree_with_score": "disagreeing with the score is not a ground for appeal",
}
GROUND_CODES = (*GROUNDS, *NOT_GROUNDS)


@dataclass(frozen=True)
class AppealPolicy:
    """The ``[appeals]`` table of the rule set; every field has a default.

    Days are calendar days unless named working days; working days are those of the
    rule set's ``[calendar]`` (Mon-Fri in its time zone, minus holidays, plus make-up
    weekend days), with this table's ``holidays`` and ``working_weekends`` added.
    """

    filing_window_days: float = 7.0  # after the rating's submitted_at
    low_composite_below: float = 3.0  # default: the rubric's low_score_below
    low_dimension_at_most: int = 2  # any dimension at most this is low too
    monthly_quota: int = 10  # admitted appeals per person per calendar month
    allow_window_ratings: bool = True  # a rating naming no staff, at one of your windows
    uphold_reviewers: int = 2  # distinct reviewers whose uphold votes void a rating
    min_reason_chars: int = 10  # written reasons: filing, decisions, escalations
    fresh_reviewers_on_reopen: bool = True  # earlier rounds' reviewers may not review again
    decision_due_working_days: int = 15
    holidays: frozenset[date] = frozenset()
    working_weekends: frozenset[date] = frozenset()
    reopen_window_days: float = 30.0  # after the appeal closed (for the appellant)
    max_reopens: int = 2  # reopens the appellant may ask for (admins are not limited)
    cluster_days: float = 3.0  # context: other low ratings within +/- this many days
    max_evidence_bytes: int = 20_000_000
    # the rule set's shared [calendar] (not a key of [appeals])
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)

    @classmethod
    def from_section(
        cls,
        section: Mapping[str, Any],
        rubric: Rubric | None = None,
        calendar: WorkingCalendar | None = None,
    ) -> AppealPolicy:
        """Read ``[appeals]``; unknown keys and bad values are a :class:`ConfigError`.
        ``calendar`` is the rule set's ``[calendar]`` (:attr:`CoreConfig.calendar`)."""
        known = {f.name for f in fields(cls)} - {"calendar"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(
                f"[appeals]: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        if rubric is not None:
            values["low_composite_below"] = rubric.low_score_below
        for name, raw in section.items():
            values[name] = _coerce(name, raw)
        if calendar is not None:
            values["calendar"] = calendar
        policy = cls(**values)
        policy._check()
        return policy

    def _check(self) -> None:
        positive = (
            "filing_window_days",
            "uphold_reviewers",
            "decision_due_working_days",
            "max_evidence_bytes",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"[appeals].{name}: must be positive")
        for name in ("monthly_quota", "min_reason_chars", "max_reopens"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[appeals].{name}: must not be negative")
        for name in ("reopen_window_days", "cluster_days"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[appeals].{name}: must not be negative")
        if self.holidays & self.working_weekends:
            raise ConfigError("[appeals]: a date is both a holiday and a working weekend")
        try:
            _ = self.working_calendar
        except ConfigError as err:
            raise ConfigError(f"[appeals] with [calendar]: {err}") from None

    # -- working days (the core's calendar, with this table's extra days) -------------------

    @cached_property
    def working_calendar(self) -> WorkingCalendar:
        """The rule set's ``[calendar]`` plus this table's own ``holidays`` and
        ``working_weekends`` (kept for rule sets written before ``[calendar]``)."""
        return self.calendar.merged(self.holidays, self.working_weekends)

    def is_working_day(self, d: date) -> bool:
        return self.working_calendar.is_working_day(d)

    def add_working_days(self, start: date, n: int) -> date:
        """The ``n``-th working day after ``start`` (``start`` itself not counted)."""
        return self.working_calendar.add_working_days(start, n)

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in ``(start, end]``; 0 when ``end <= start``."""
        return self.working_calendar.working_days_between(start, end)

    def due_at(self, started_at: datetime, tz: ZoneInfo) -> datetime:
        """When a decision is due: the end of the N-th working day after the local day
        the review round started (UTC, exclusive: overdue from this instant on)."""
        return self.working_calendar.due_at(started_at, tz, self.decision_due_working_days)

    # -- scores -------------------------------------------------------------------------

    def is_low_score(self, composite: float, scores: Mapping[str, int]) -> bool:
        """Composite below the mark, or any dimension at most ``low_dimension_at_most``."""
        if composite < self.low_composite_below:
            return True
        return any(v <= self.low_dimension_at_most for v in scores.values())


def _coerce(name: str, raw: Any) -> Any:
    where = f"[appeals].{name}"
    if name in ("holidays", "working_weekends"):
        return parse_dates(raw, where)
    if name in ("allow_window_ratings", "fresh_reviewers_on_reopen"):
        if not isinstance(raw, bool):
            raise ConfigError(f"{where}: expected true or false")
        return raw
    if name in (
        "low_dimension_at_most",
        "monthly_quota",
        "uphold_reviewers",
        "min_reason_chars",
        "decision_due_working_days",
        "max_reopens",
        "max_evidence_bytes",
    ):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{where}: expected an integer")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise ConfigError(f"{where}: expected a number")
    return float(raw)


# -- eligibility of a filing ------------------------------------------------------------


@dataclass(frozen=True)
class Ineligibility:
    """Why a filing is not admitted: a code for machines, a sentence for people."""

    code: str
    message: str


@dataclass(frozen=True)
class FilingFacts:
    """Everything eligibility depends on, gathered by the service."""

    appellant_id: str
    appellant_windows: Collection[str]
    rating_staff_id: str | None
    rating_window_id: str
    rating_status: Status
    composite: float
    scores: Mapping[str, int]
    submitted_at: datetime
    filed_at: datetime
    ground: str
    admitted_this_month: int  # the appellant's admitted appeals in filed_at's month
    existing_appeal: int | None  # id of the appeal that already claims the rating


def check_filing(policy: AppealPolicy, f: FilingFacts) -> tuple[Ineligibility, ...]:
    """Every reason the filing is not admitted; empty when it is."""
    out: list[Ineligibility] = []
    if f.ground not in GROUNDS:
        msg = NOT_GROUNDS.get(f.ground, f"{f.ground!r} is not a ground")
        out.append(
            Ineligibility(Reason.GROUND_NOT_ADMISSIBLE, f"{msg}; grounds are: {', '.join(GROUNDS)}")
        )
    own = f.rating_staff_id == f.appellant_id or (
        policy.allow_window_ratings
        and f.rating_staff_id is None
        and f.rating_window_id in f.appellant_windows
    )
    if not own:
        about = (
            f"staff {f.rating_staff_id}"
            if f.rating_staff_id
            else f"window {f.rating_window_id} (no staff named)"
        )
        out.append(Ineligibility(Reason.NOT_OWN_RATING, f"the rating is about {about}, not you"))
    if f.rating_status in (Status.REJECTED, Status.VOIDED):
        out.append(
            Ineligibility(
                Reason.RATING_NOT_COUNTED,
                f"the rating is {f.rating_status.value} and does not count; nothing to appeal",
            )
        )
    if not policy.is_low_score(f.composite, f.scores):
        out.append(
            Ineligibility(
                Reason.NOT_LOW_SCORE,
                f"composite {f.composite:.2f} is not below {policy.low_composite_below:g} "
                f"and no dimension is at most {policy.low_dimension_at_most}",
            )
        )
    if not within_filing_window(policy, f.submitted_at, f.filed_at):
        days = (f.filed_at - f.submitted_at).total_seconds() / 86400
        out.append(
            Ineligibility(
                Reason.FILING_WINDOW_CLOSED,
                f"filed {days:.1f} days after the rating; appeals are accepted for "
                f"{policy.filing_window_days:g} days",
            )
        )
    if f.existing_appeal is not None:
        out.append(
            Ineligibility(
                Reason.ALREADY_APPEALED,
                f"appeal {f.existing_appeal} already contests this rating (one per rating)",
            )
        )
    if f.admitted_this_month >= policy.monthly_quota:
        out.append(
            Ineligibility(
                Reason.MONTHLY_QUOTA_EXCEEDED,
                f"{f.admitted_this_month} appeals admitted this month; the quota is "
                f"{policy.monthly_quota}",
            )
        )
    return tuple(out)


def within_filing_window(policy: AppealPolicy, submitted_at: datetime, filed_at: datetime) -> bool:
    """Filed no earlier than the rating and at most ``filing_window_days`` after it."""
    return timedelta(0) <= filed_at - submitted_at <= timedelta(days=policy.filing_window_days)


def month_bounds(at: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The calendar month of ``at`` in ``tz``, as a half-open UTC interval."""
    local = at.astimezone(tz)
    start = datetime(local.year, local.month, 1, tzinfo=tz)
    ny, nm = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    end = datetime(ny, nm, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


# -- separation of duties ----------------------------------------------------------------


def reviewer_conflict(
    *,
    reviewer_id: str,
    reviewer_unit: str,
    appellant_id: str,
    appellant_units: Collection[str],
    earlier_reviewers: Collection[str] = (),
    fresh_reviewers: bool = True,
) -> str | None:
    """Why this person may not review this appeal, or ``None`` if they may.

    ``appellant_units`` are the appellant's unit when filing and now (a move between
    units does not open a back door). An empty unit never matches.
    """
    if reviewer_id == appellant_id:
        return "an appellant never reviews their own appeal"
    if reviewer_unit and reviewer_unit in {u for u in appellant_units if u}:
        return f"{reviewer_id} is in the appellant's unit ({reviewer_unit})"
    if fresh_reviewers and reviewer_id in earlier_reviewers:
        return f"{reviewer_id} reviewed an earlier round; a reopened appeal needs fresh reviewers"
    return None


def uphold_completes(policy: AppealPolicy, earlier_uphold_voters: Collection[str]) -> bool:
    """Whether one more (distinct) uphold vote reaches the quorum."""
    return len(set(earlier_uphold_voters)) + 1 >= policy.uphold_reviewers


def written_reason(policy: AppealPolicy, text: str | None, field: str = "reason") -> str:
    """The trimmed text of a written reason; ``InvalidInput`` when it is too short."""
    text = (text or "").strip()
    need = max(policy.min_reason_chars, 1)
    if len(text) < need:
        raise InvalidInput(
            [FieldError(field, f"a written reason of at least {need} characters is required")],
            what="appeal action",
        )
    return text
