"""The appeals' figures for a period's pages and public release (the core's
:class:`~integrity.reports.AppealFigures`): the appeals about the period's ratings
(whenever filed: a rating of the month's last days is appealed in the next), by what
became of them so far (counted as ``integrity appeal stats`` counts)."""

from __future__ import annotations

from collections import Counter

from appeals.model import State
from appeals.repository import AppealFilter, AppealRepository
from appeals.stats import summarise
from integrity.clock import Clock
from integrity.ports import Ledger, RatingQuery
from integrity.reports import AppealCounts, Period


class PeriodAppeals:
    """:class:`~integrity.reports.AppealFigures` over the appeals' tables."""

    def __init__(self, repo: AppealRepository, ledger: Ledger, clock: Clock) -> None:
        self.repo = repo
        self.ledger = ledger
        self.clock = clock

    def of_period(self, period: Period) -> AppealCounts:
        # an appeal is filed after its rating: those filed before the period are not about it
        filed = self.repo.find(AppealFilter(filed_from=period.start))
        ids = sorted({a.rating_id for a in filed})
        inside = (
            {
                r.rating_id
                for r in self.ledger.find_ratings(
                    RatingQuery(ids=ids, occurred_from=period.start, occurred_to=period.end)
                )
            }
            if ids
            else set()
        )
        appeals = [a for a in filed if a.rating_id in inside]
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
