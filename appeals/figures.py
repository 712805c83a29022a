"""The appeals' figures for a period's pages and public release (the core's
:class:`~integrity.reports.AppealFigures`): appeals filed in the period, by what
became of them so far (counted as ``integrity appeal stats --period`` counts)."""

from __future__ import annotations

from collections import Counter

from appeals.model import State
from appeals.repository import AppealFilter, AppealRepository
from appeals.stats import summarise
from integrity.clock import Clock
from integrity.reports import AppealCounts, Period


class PeriodAppeals:
    """:class:`~integrity.reports.AppealFigures` over the appeals' tables."""

    def __init__(self, repo: AppealRepository, clock: Clock) -> None:
        self.repo = repo
        self.clock = clock

    def of_period(self, period: Period) -> AppealCounts:
        appeals = self.repo.find(AppealFilter(filed_from=period.start, filed_to=period.end))
        s = summarise(appeals, self.clock.now())
        by_state = s["by_state"]
        return AppealCounts(
            filed=s["appeals"],
            admitted=s["admitted"],
            ineligible=by_state[State.INELIGIBLE.value],
            open=s["open"],
            decided=s["decided"],
            upheld=s["upheld"],
            rejected=s["rejected"],
            withdrawn=by_state[State.WITHDRAWN.value],
            overdue=s["overdue"],
            uphold_rate=s["uphold_rate"],
            by_ground=dict(sorted(Counter(a.ground for a in appeals).items())),
        )
