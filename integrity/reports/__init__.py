"""Reading the ledger: performance reports and the ratings export (a library).

Performance counts ``accepted`` ratings only. A rating belongs to the period of its
``served_at`` (``submitted_at`` when absent) in the rule set's time zone.

- :mod:`~integrity.reports.periods`: months, quarters, ISO weeks, ranges of days;
- :mod:`~integrity.reports.performance`: the report (:func:`build_report` ->
  :class:`Report` of typed :class:`ReportRow` with the period, grouping and rubric);
- :mod:`~integrity.reports.figures`: a trend over periods, low scores per window and
  day, what the integrity checks excluded and why (for the supervisor's pages);
- :mod:`~integrity.reports.followup`: the extension point for the follow-up loop;
- :mod:`~integrity.reports.checks`: the extension points for the audit's and the
  appeals' figures of a period;
- :mod:`~integrity.reports.service`: :class:`ReportService`, what commands call.

The counting runs in the database through the ledger port (``Ledger.aggregate``).
"""

from __future__ import annotations

from integrity.reports.checks import AppealCounts, AppealFigures, AuditFigures, AuditSummary
from integrity.reports.export import (
    EXPORT_COLUMNS,
    ExportSpec,
    export_ratings,
    export_rows,
)
from integrity.reports.figures import (
    STAGE_LABELS,
    STAGES,
    DailyLow,
    Exclusions,
    Trend,
    TrendPoint,
    period_days,
    short_label,
    stage_of,
    trend_periods,
)
from integrity.reports.followup import FollowupFigures
from integrity.reports.performance import (
    GROUPS,
    NO_KEY_LABELS,
    REPORT_COLUMNS,
    RectifyRule,
    Report,
    ReportRow,
    build_report,
    clopper_pearson,
    competition_ranks,
    performance,
)
from integrity.reports.periods import Period, local_time
from integrity.reports.service import Export, ReportService

__all__ = [
    "EXPORT_COLUMNS",
    "GROUPS",
    "NO_KEY_LABELS",
    "REPORT_COLUMNS",
    "STAGES",
    "STAGE_LABELS",
    "AppealCounts",
    "AppealFigures",
    "AuditFigures",
    "AuditSummary",
    "DailyLow",
    "Exclusions",
    "Export",
    "ExportSpec",
    "FollowupFigures",
    "Period",
    "RectifyRule",
    "Report",
    "ReportRow",
    "ReportService",
    "Trend",
    "TrendPoint",
    "build_report",
    "clopper_pearson",
    "competition_ranks",
    "export_ratings",
    "export_rows",
    "local_time",
    "performance",
    "period_days",
    "short_label",
    "stage_of",
    "trend_periods",
]
