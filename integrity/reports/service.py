"""The reports service: what ``integrity report`` and ``integrity export`` call.

It reads the rule set (time zone, rubric, ``[followup]``) and the current service
registry, and hands them to the library (:func:`build_report`, :func:`export_rows`).
A later front end (HTML pages, spreadsheets) calls the same methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from integrity.access import require_read
from integrity.config import CoreConfig
from integrity.errors import FieldError, InvalidInput
from integrity.ports import Ledger
from integrity.registry import RegistryService, ServiceRegistry
from integrity.reports.checks import AppealFigures, AuditFigures
from integrity.reports.export import ExportSpec, export_rows
from integrity.reports.figures import (
    DailyLow,
    Exclusions,
    Trend,
    daily_low,
    exclusions,
    trend,
    trend_periods,
)
from integrity.reports.followup import FollowupFigures
from integrity.reports.performance import RectifyRule, Report, _window_filter, build_report
from integrity.reports.periods import Period

if TYPE_CHECKING:
    from integrity.app import App
    from integrity.people import People, Person


@dataclass(frozen=True)
class Export:
    """An export ready to render: its columns and its rows (a stream)."""

    columns: tuple[str, ...]
    rows: Iterator[dict[str, Any]]


class ReportService:
    """Performance reports and the ratings export over one instance."""

    def __init__(
        self,
        ledger: Ledger,
        core: CoreConfig,
        registry: Callable[[], ServiceRegistry],
        people: People | None = None,
        followup: FollowupFigures | None = None,
        audit: AuditFigures | None = None,
        appeals: AppealFigures | None = None,
    ) -> None:
        self.ledger = ledger
        self.core = core
        self.registry = registry
        self.people = people
        self.followup = followup
        self.audit = audit
        self.appeals = appeals

    @classmethod
    def from_app(cls, app: App) -> ReportService:
        """Wired by the composition root; picks up the follow-up loop's figures, the
        audit's and the appeals' (:mod:`integrity.reports.checks`) when they are wired."""

        def wired(kind: Any) -> Any:
            return app.get(kind) if kind in app.factories else None

        return cls(
            app.ledger,
            app.core,
            app.get(RegistryService).current,
            app.people,
            wired(FollowupFigures),
            audit=wired(AuditFigures),
            appeals=wired(AppealFigures),
        )

    def period(
        self,
        text: str | None = None,
        first: str | date | None = None,
        last: str | date | None = None,
    ) -> Period | None:
        """``--period`` (month, quarter, ISO week) or ``--from``/``--to`` (days, both
        included) in the rule set's time zone; ``None`` (all time) when none is given."""
        tz = self.core.timezone
        if text is not None and (first is not None or last is not None):
            raise InvalidInput(
                [FieldError("period", "give --period or --from/--to, not both")], what="period"
            )
        if text is not None:
            return Period.parse(text, tz)
        if first is None and last is None:
            return None
        if first is None or last is None:
            missing = "from" if first is None else "to"
            raise InvalidInput([FieldError(missing, "--from and --to go together")], what="period")
        return Period.between(first, last, tz)

    def report(
        self,
        by: str = "window",
        period: Period | None = None,
        *,
        hall: str | None = None,
        window: str | None = None,
    ) -> Report:
        """The performance report (see :func:`~integrity.reports.performance.build_report`)."""
        return build_report(
            self.ledger,
            by=by,
            rubric=self.core.rubric,
            period=period,
            registry=self.registry(),
            hall=hall,
            window=window,
            rectify=RectifyRule.from_section(self.core.section("followup")),
            followup=self.followup,
        )

    def windows_of(self, hall: str | None, window: str | None = None) -> tuple[str, ...] | None:
        """The windows a hall (through the registry) and/or window filter keeps (``None``:
        every window); ``InvalidInput`` for a hall the registry does not know."""
        return _window_filter(self.registry(), hall, window)

    def trend(self, period: Period, *, count: int = 12, hall: str | None = None) -> Trend:
        """Score and low-score rate per window, hall and overall over the ``count``
        periods ending with ``period`` (see :func:`~integrity.reports.figures.trend_periods`)."""
        return trend(
            self.ledger,
            self.core.rubric,
            trend_periods(period, count),
            self.registry(),
            self.windows_of(hall),
        )

    def daily_low(self, period: Period, *, hall: str | None = None) -> DailyLow:
        """Counted and low ratings per window and local day of ``period``."""
        return daily_low(self.ledger, self.core.rubric, period, self.windows_of(hall))

    def exclusions(self, period: Period | None, *, hall: str | None = None) -> Exclusions:
        """What the integrity checks excluded from ``period``, by status, stage, reason."""
        return exclusions(self.ledger, self.core.rubric, period, self.windows_of(hall))

    def export(
        self,
        reader: Person | None = None,
        *,
        with_comments: bool = False,
        client_id: str | None = None,
    ) -> Export:
        """Every rating in the order received (only ``client_id``'s when given), for
        ``reader`` (``None``: the operator) under the read policy (:mod:`integrity.access`):
        the export needs ``ratings``, comments (only when asked for) need ``comments``;
        else ``PermissionDenied``."""
        require_read(reader, "ratings")
        if with_comments:
            require_read(reader, "comments")
        spec = ExportSpec(
            rubric=self.core.rubric,
            registry=self.registry(),
            timezone=self.core.timezone,
            with_comments=with_comments,
            client_id=client_id,
        )
        return Export(spec.columns, export_rows(self.ledger, spec))
