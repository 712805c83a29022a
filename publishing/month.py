"""Everything a period's page, spreadsheet and public release show, gathered once.

:class:`PeriodView` holds the period's reports (windows, halls, staff when the reader
may read staff performance), the trend over the periods before it, the low scores per
window and day, what the integrity checks excluded and why, the audit's estimates and
the appeals of the period (when those packages are wired), the follow-up loop's
columns (when wired), and the names the registry gives halls and windows.
:class:`Pages` builds it for a reader under the read policy (:mod:`integrity.access`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from integrity.access import may_read, require_read
from integrity.model import Rubric
from integrity.people import Person
from integrity.registry import ServiceRegistry
from integrity.reports import (
    AppealCounts,
    AuditSummary,
    DailyLow,
    Exclusions,
    Period,
    Report,
    ReportRow,
    ReportService,
    Trend,
)
from integrity.reports.periods import local_time

if TYPE_CHECKING:
    from integrity.app import App
    from integrity.clock import Clock
    from integrity.log import MerkleLog
    from integrity.people import People


@dataclass(frozen=True)
class PeriodView:
    """A period's figures for one reader (see the module docstring)."""

    period: Period
    hall: str | None
    generated_at: datetime
    rule_set_id: str
    rubric: Rubric
    registry: ServiceRegistry
    windows: Report
    halls: Report | None
    staff: Report | None
    staff_allowed: bool
    trend: Trend
    daily: DailyLow
    exclusions: Exclusions
    audit: AuditSummary | None
    audit_wired: bool
    appeals: AppealCounts | None
    checkpoint: str
    names: Mapping[str, str] = field(default_factory=dict)  # person id -> name

    @property
    def tz(self) -> Any:
        return self.period.tz

    @property
    def title(self) -> str:
        where = f" · {self.hall_label(self.hall)}" if self.hall else ""
        return f"Performance and integrity, {self.period.label}{where}"

    @property
    def scope(self) -> str:
        return self.period.describe()

    @property
    def generated(self) -> str:
        return local_time(self.generated_at, self.period.tz)

    def hall_name(self, hall_id: str | None) -> str:
        h = self.registry.halls.get(hall_id or "")
        return h.name if h is not None else ""

    def hall_label(self, hall_id: str | None) -> str:
        """``东城政务服务中心 (H1)``, or the id alone without a name."""
        if hall_id is None:
            return "(not in the registry)"
        name = self.hall_name(hall_id)
        return f"{name} ({hall_id})" if name else hall_id

    def window_name(self, window_id: str | None) -> str:
        w = self.registry.windows.get(window_id or "")
        return w.name if w is not None else ""

    def staff_name(self, staff_id: str | None) -> str:
        return self.names.get(staff_id or "", "")

    @property
    def followup_columns(self) -> tuple[str, ...]:
        return self.windows.followup_columns

    def rectify_rows(self) -> list[tuple[str, ReportRow]]:
        """(``by``, row) of every group flagged to rectify: halls, windows, staff."""
        out: list[tuple[str, ReportRow]] = []
        for rep in (self.halls, self.windows, self.staff):
            if rep is not None:
                out += [(rep.by, r) for r in rep.rows if r.rectify]
        return out

    def whole_dimensions(self) -> dict[str, float | None]:
        """Each dimension's mean over every counted rating (weighted by counted)."""
        out: dict[str, float | None] = {}
        for d in self.rubric.dimensions:
            pairs = [
                (r.dimensions.get(d), r.counted)
                for r in self.windows.rows
                if r.dimensions.get(d) is not None
            ]
            n = sum(c for _, c in pairs)
            out[d] = sum(float(v or 0.0) * c for v, c in pairs) / n if n else None
        return out

    def whole(self) -> tuple[int, float | None, float | None]:
        """(counted, score, low-score rate) over every counted rating of the period."""
        counted = sum(r.counted for r in self.windows.rows)
        if not counted:
            return 0, None, None
        score = sum((r.score or 0.0) * r.counted for r in self.windows.rows) / counted
        low = sum(r.low_scores for r in self.windows.rows) / counted
        return counted, score, low


def last_month(now: datetime, tz: Any) -> Period:
    """The month before the one ``now`` falls in, in ``tz``."""
    first = now.astimezone(tz).date().replace(day=1)
    prev = first - timedelta(days=1)
    return Period.month(prev.strftime("%Y-%m"), tz)


class Pages:
    """The period views behind ``report page``, ``report book``, ``GET /v1/reports/page``
    and ``publish``."""

    def __init__(
        self,
        reports: ReportService,
        log: MerkleLog,
        clock: Clock,
        people: People | None = None,
    ) -> None:
        self.reports = reports
        self.log = log
        self.clock = clock
        self.people = people

    @classmethod
    def from_app(cls, app: App) -> Pages:
        return cls(app.get(ReportService), app.log, app.clock, app.people)

    @property
    def rule_set_id(self) -> str:
        return self.reports.core.rule_set_id

    def period(
        self,
        text: str | None = None,
        first: str | date | None = None,
        last: str | date | None = None,
    ) -> Period:
        """``--period`` or ``--from``/``--to`` as ``report`` reads them; neither: the last
        whole month (the month before this one in the rule set's time zone)."""
        found = self.reports.period(text, first, last)
        return found or last_month(self.clock.now(), self.reports.core.timezone)

    def view(
        self,
        reader: Person | None,
        period: Period,
        *,
        hall: str | None = None,
        staff: bool = True,
        trend_periods: int = 12,
    ) -> PeriodView:
        """The figures of ``period`` (at ``hall``'s windows only, when given) for
        ``reader`` (``None``: the operator): needs ``report_pages``; the staff table
        only with ``staff`` and when the reader may read ``staff_performance``."""
        require_read(reader, "report_pages")
        svc = self.reports
        registry = svc.registry()
        staff_allowed = staff and may_read(reader, "staff_performance")
        windows = svc.report("window", period, hall=hall)
        halls = svc.report("hall", period, hall=hall) if registry.loaded else None
        staff_rep = svc.report("staff", period, hall=hall) if staff_allowed else None
        audit = svc.audit.of_period(period) if svc.audit is not None and hall is None else None
        appeals = svc.appeals.of_period(period) if svc.appeals is not None else None
        names: dict[str, str] = {}
        if staff_rep is not None and self.people is not None:
            names = {p.person_id: p.name for p in self.people.all() if p.name}
        return PeriodView(
            period=period,
            hall=hall,
            generated_at=self.clock.now(),
            rule_set_id=self.rule_set_id,
            rubric=svc.core.rubric,
            registry=registry,
            windows=windows,
            halls=halls,
            staff=staff_rep,
            staff_allowed=staff_allowed,
            trend=svc.trend(period, count=trend_periods, hall=hall),
            daily=svc.daily_low(period, hall=hall),
            exclusions=svc.exclusions(period, hall=hall),
            audit=audit,
            audit_wired=svc.audit is not None,
            appeals=appeals,
            checkpoint=self.log.head().checkpoint(),
            names=names,
        )
