"""What others read of the alerts: the rater's receipt and the performance report.

:class:`AlertView` tells the rater (their receipt, no personal data) where the
follow-up of a low score stands and the reply the window wrote. :class:`AlertFigures`
is the follow-up loop's :class:`~integrity.reports.followup.FollowupFigures`: every
performance report gains ``alerts_opened``, ``answered_in_24h`` and ``alerts_overdue``
per group. Both are wired by the composition root.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from followup.alerts.model import State, stage_words
from followup.alerts.store import AlertFilter, AlertStore
from integrity.clock import Clock
from integrity.registry import RegistryService, ServiceRegistry

if TYPE_CHECKING:
    from followup.alerts.service import AlertService
    from integrity.app import App
    from integrity.reports.periods import Period

#: The column of the alerts table each report grouping reads (``hall``: by window,
#: then summed per hall through the service registry).
GROUP_COLUMNS: Mapping[str, str] = {
    "window": "window_id",
    "staff": "staff_id",
    "service_type": "service_type",
    "channel": "channel",
    "hall": "window_id",
}


class AlertView:
    """The follow-up of one rating, in plain words, for the rater's receipt."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store

    @classmethod
    def from_app(cls, app: App) -> AlertView:
        return cls(AlertStore(app.ledger))

    def stage(self, rating_id: int) -> tuple[str, str | None] | None:
        """``(stage, reply)`` for a rating with an alert: the stage in plain words
        ("awaiting the window's answer", "being rectified", "a reply has been written"
        ...) and the reply the window wrote (``None`` until written). ``None`` when the
        rating has no alert, or only void ones (it stopped counting)."""
        live = [
            a
            for a in self.store.find(AlertFilter(rating_ids=(rating_id,)))
            if a.state is not State.VOID
        ]
        if not live:
            return None
        alert = live[-1]
        words = stage_words(alert)
        if words is None:  # pragma: no cover - void alerts are left out above
            return None
        written = alert.state in (State.FEEDBACK_GIVEN, State.CLOSED)
        return words, alert.reply if written else None


class AlertFigures:
    """The alerts' figures in performance reports, per group of the period:

    - ``alerts_opened``: alerts opened in the period (by ``opened_at``) whose rating
      still counts (void ones are left out);
    - ``answered_in_24h``: the share of them answered (acknowledged) within 24 hours,
      among those whose answer is given or due (empty when none is);
    - ``alerts_overdue``: how many of them missed a deadline: not answered within
      24 hours, or no reply within the working days (late or still missing).
    """

    columns: tuple[str, ...] = ("alerts_opened", "answered_in_24h", "alerts_overdue")

    def __init__(
        self,
        store: AlertStore,
        clock: Clock,
        registry: Callable[[], ServiceRegistry],
        sync: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.registry = registry
        self.sync = sync

    @classmethod
    def from_app(cls, app: App) -> AlertFigures:
        from followup.alerts.service import AlertService

        service: AlertService = app.get(AlertService)
        return cls(service.store, app.clock, app.get(RegistryService).current, service.sync)

    def figures(
        self, by: str, period: Period | None, keys: Sequence[str | None]
    ) -> Mapping[str | None, Mapping[str, Any]]:
        column = GROUP_COLUMNS.get(by)
        if column is None:
            return {}
        if self.sync is not None:
            self.sync()
        rows = self.store.figures(
            column,
            period.start if period else None,
            period.end if period else None,
            self.clock.now(),
        )
        totals: dict[str | None, list[int]] = {}
        reg = self.registry() if by == "hall" else None
        for key, opened, due, on_time, missed in rows:
            if reg is not None:
                hall = reg.hall_of(key) if key is not None else None
                key = hall.hall_id if hall else None
            t = totals.setdefault(key, [0, 0, 0, 0])
            for i, v in enumerate((opened, due, on_time, missed)):
                t[i] += v
        out: dict[str | None, Mapping[str, Any]] = {}
        for key in keys:
            opened, due, on_time, missed = totals.get(key, [0, 0, 0, 0])
            out[key] = {
                "alerts_opened": opened,
                "answered_in_24h": on_time / due if due else None,
                "alerts_overdue": missed,
            }
        return out
